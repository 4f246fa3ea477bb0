"""What the project's synthetic scenes hold: surfaces, objects, textures, light, cameras.

Plain data (no Blender import), rendered by `engine/data/synthetic_scene.py`:
- `default`: a wooden table with six textured objects on a transparent background, 200 px
  (the main job's scene; docs/default_scene.md).
- `room`: a tiled floor with a coffee table and objects on both, two of them look-alikes
  in different places, a thin pen and an upright ring, inside a textured room (an
  environment texture: opaque images, nothing transparent), 400 px (docs/default_scene.md,
  "The room scene").

Every object's mask id is its position in `SceneSpec.objects()` plus 1 (0: background).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Texture:
    """A procedural texture whose scalar output is mapped onto a two-colour ramp."""

    node: str  # shader node type, e.g. "ShaderNodeTexChecker"
    output: str  # the scalar output socket that drives the ramp
    colors: tuple[tuple[float, float, float], tuple[float, float, float]]  # linear RGB
    inputs: dict[str, float] = field(default_factory=dict)  # input socket defaults
    settings: dict[str, str | int] = field(default_factory=dict)  # node properties
    ramp_stops: tuple[float, float] = (0.0, 1.0)  # output values given the two colours
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # of the texture space
    roughness: float = 0.5


@dataclass(frozen=True)
class Shape:
    """A Blender mesh primitive: bpy.ops.mesh.primitive_<kind>_add(**params)."""

    kind: str  # cube | uv_sphere | cylinder | cone | torus | monkey
    params: dict[str, float | int | tuple[float, float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Prop:
    """An object resting on the ground slab or on another prop."""

    name: str
    shape: Shape
    xy: tuple[float, float]
    texture: Texture
    rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # XYZ Euler, world axes
    on: str | None = None  # the prop it stands on (None: the ground slab)


@dataclass(frozen=True)
class Ground:
    """The slab everything stands on: centred at the origin, its top at z = 0."""

    name: str
    size: tuple[float, float, float]  # x, y, thickness
    texture: Texture


@dataclass(frozen=True)
class World:
    """The light from infinity: a uniform colour (the film transparent, the background
    alpha 0) or, with `texture`, an environment texture indexed by direction that shows
    behind everything (the film opaque)."""

    color: tuple[float, float, float] = (0.3, 0.32, 0.36)
    texture: Texture | None = None
    strength: float = 1.0

    @property
    def transparent(self) -> bool:
        return self.texture is None


@dataclass(frozen=True)
class SceneSpec:
    name: str
    ground: Ground
    props: tuple[Prop, ...]
    world: World
    size: int  # default image width = height, px
    camera_radius: float  # distance of the cameras from `look_at`
    look_at: tuple[float, float, float]
    elevation_band_deg: tuple[float, float]
    fov_x_deg: float = 40.0
    min_gap: float = 0.15  # clearance between footprints of props on the same support
    sun_energy: float = 3.0

    def objects(self) -> list[str]:
        """Names in mask-id order (id = index + 1)."""
        return [self.ground.name, *(prop.name for prop in self.props)]


WOOD = Texture(
    "ShaderNodeTexWave",
    "Fac",
    ((0.16, 0.07, 0.025), (0.42, 0.22, 0.09)),
    inputs={"Scale": 2.5, "Distortion": 6.0, "Detail": 2.0, "Detail Scale": 1.5},
    settings={"wave_type": "BANDS", "bands_direction": "X"},
    roughness=0.6,
)

DEFAULT = SceneSpec(
    name="default",
    ground=Ground("table", (2.4, 1.8, 0.08), WOOD),
    props=(
        Prop(
            "checker_cube",
            Shape("cube", {"size": 0.42}),
            (-0.78, 0.42),
            Texture("ShaderNodeTexChecker", "Fac", ((0.75, 0.05, 0.04), (0.85, 0.8, 0.65)), {"Scale": 8.0}),
            rotation_deg=(0.0, 0.0, 20.0),
        ),
        Prop(
            "voronoi_sphere",
            Shape("uv_sphere", {"radius": 0.26, "segments": 48, "ring_count": 24}),
            (0.0, 0.42),
            Texture("ShaderNodeTexVoronoi", "Distance", ((0.02, 0.08, 0.6), (0.5, 0.8, 0.95)), {"Scale": 9.0}),
        ),
        Prop(
            "brick_cylinder",
            Shape("cylinder", {"radius": 0.18, "depth": 0.5, "vertices": 48}),
            (0.78, 0.42),
            Texture(
                "ShaderNodeTexBrick",
                "Fac",
                ((0.6, 0.22, 0.05), (0.75, 0.72, 0.68)),
                {"Scale": 1.5, "Mortar Size": 0.03},
                rotation_deg=(90.0, 0.0, 0.0),  # the pattern is planar: stand it up, rows horizontal
                roughness=0.8,
            ),
        ),
        Prop(
            "wave_cone",
            Shape("cone", {"radius1": 0.25, "radius2": 0.0, "depth": 0.55, "vertices": 48}),
            (-0.78, -0.42),
            Texture("ShaderNodeTexWave", "Fac", ((0.08, 0.35, 0.05), (0.85, 0.8, 0.1)), {"Scale": 2.0},
                    settings={"wave_type": "RINGS"}),
        ),
        Prop(
            "magic_torus",
            Shape("torus", {"major_radius": 0.2, "minor_radius": 0.08, "major_segments": 48,
                            "minor_segments": 16}),
            (0.0, -0.42),
            Texture("ShaderNodeTexMagic", "Fac", ((0.35, 0.03, 0.45), (0.95, 0.45, 0.7)), {"Scale": 5.0},
                    settings={"turbulence_depth": 3}, ramp_stops=(0.3, 0.7)),
        ),
        Prop(
            "noise_monkey",
            Shape("monkey", {"size": 0.4}),
            (0.78, -0.42),
            Texture("ShaderNodeTexNoise", "Fac", ((0.02, 0.3, 0.3), (0.7, 0.95, 0.85)),
                    {"Scale": 6.0, "Detail": 1.0}, ramp_stops=(0.35, 0.65), roughness=0.35),
            rotation_deg=(0.0, 0.0, -25.0),
        ),
    ),
    world=World(),
    size=200,
    # Smallest radius (in steps of 0.2) that keeps the whole table inside the 40 degree
    # view from every camera of the band, with a margin (at least 9 px of 200 in 72 views).
    camera_radius=4.8,
    look_at=(0.0, 0.0, 0.15),
    elevation_band_deg=(20.0, 70.0),
)

# The look-alikes: one mesh and one texture (in object space, so they look the same), one
# on the coffee table and one on the floor.
BOTTLE_SHAPE = Shape("cone", {"radius1": 0.14, "radius2": 0.07, "depth": 0.42, "vertices": 48})
BOTTLE_TEXTURE = Texture("ShaderNodeTexWave", "Fac", ((0.7, 0.3, 0.02), (0.95, 0.85, 0.55)),
                         {"Scale": 3.0, "Distortion": 0.0}, settings={"bands_direction": "Z"})

ROOM = SceneSpec(
    name="room",
    ground=Ground(
        "floor",
        (4.0, 4.0, 0.1),
        Texture("ShaderNodeTexBrick", "Fac", ((0.3, 0.3, 0.32), (0.55, 0.5, 0.42)),
                {"Scale": 0.8, "Mortar Size": 0.015, "Bias": 0.3}, roughness=0.7),
    ),
    props=(
        Prop(
            "coffee_table",
            Shape("cube", {"size": 1.0, "scale": (1.4, 0.9, 0.36)}),
            (-0.3, 0.1),
            Texture("ShaderNodeTexNoise", "Fac", ((0.62, 0.6, 0.58), (0.92, 0.9, 0.86)),
                    {"Scale": 4.0, "Detail": 4.0, "Distortion": 2.0}, ramp_stops=(0.35, 0.7),
                    roughness=0.3),
        ),
        Prop("bottle_on_table", BOTTLE_SHAPE, (-0.8, 0.3), BOTTLE_TEXTURE, on="coffee_table"),
        Prop("bottle_on_floor", BOTTLE_SHAPE, (1.25, -1.3), BOTTLE_TEXTURE),
        Prop(
            "pen",  # the thin object: 5 cm across (2.5 voxels at 128^3), lying on the table
            Shape("cylinder", {"radius": 0.025, "depth": 0.5, "vertices": 24}),
            (-0.27, -0.14),
            Texture("ShaderNodeTexChecker", "Fac", ((0.02, 0.05, 0.5), (0.9, 0.9, 0.9)), {"Scale": 12.0}),
            rotation_deg=(0.0, 90.0, 25.0),
            on="coffee_table",
        ),
        Prop(
            "ring",  # the object with a hole, standing upright: the room shows through it
            Shape("torus", {"major_radius": 0.3, "minor_radius": 0.05, "major_segments": 64,
                            "minor_segments": 16}),
            (-1.25, -1.2),
            Texture("ShaderNodeTexMagic", "Fac", ((0.02, 0.25, 0.1), (0.4, 0.85, 0.3)), {"Scale": 6.0},
                    settings={"turbulence_depth": 2}, ramp_stops=(0.3, 0.7)),
            rotation_deg=(90.0, 0.0, 30.0),
        ),
        Prop(
            "ball",
            Shape("uv_sphere", {"radius": 0.24, "segments": 48, "ring_count": 24}),
            (1.2, 1.1),
            Texture("ShaderNodeTexVoronoi", "Distance", ((0.55, 0.02, 0.05), (0.95, 0.6, 0.3)), {"Scale": 7.0}),
        ),
        Prop(
            "box",
            Shape("cube", {"size": 0.26}),
            (0.22, 0.33),
            Texture("ShaderNodeTexChecker", "Fac", ((0.05, 0.35, 0.7), (0.85, 0.8, 0.65)), {"Scale": 6.0}),
            rotation_deg=(0.0, 0.0, -30.0),
            on="coffee_table",
        ),
        Prop(
            "monkey",
            Shape("monkey", {"size": 0.45}),
            (-1.35, 1.35),
            Texture("ShaderNodeTexNoise", "Fac", ((0.35, 0.12, 0.4), (0.85, 0.6, 0.9)),
                    {"Scale": 6.0, "Detail": 1.0}, ramp_stops=(0.35, 0.65), roughness=0.35),
            rotation_deg=(0.0, 0.0, -60.0),
        ),
    ),
    # Walls of a room, far away: large blotches of two plaster colours with finer detail.
    world=World(
        texture=Texture("ShaderNodeTexNoise", "Fac", ((0.32, 0.22, 0.14), (0.75, 0.68, 0.55)),
                        {"Scale": 2.5, "Detail": 3.0}, ramp_stops=(0.3, 0.7)),
        strength=1.2,
    ),
    size=400,
    camera_radius=5.0,
    look_at=(0.0, 0.0, 0.2),
    elevation_band_deg=(15.0, 60.0),
)

SCENES = {spec.name: spec for spec in (DEFAULT, ROOM)}
