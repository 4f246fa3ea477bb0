"""What the add-on keeps on the Blender scene (saved with the .blend): the engine scene
it shows, the engine-to-Blender transform, the segments, the brush, the running job."""

from __future__ import annotations

import bpy


class ISRF_Segment(bpy.types.PropertyGroup):
    # `name` (the engine's segment name) comes with PropertyGroup.
    voxels: bpy.props.IntProperty(name="Voxels", min=0)
    strokes: bpy.props.IntProperty(name="Strokes", min=0)


class ISRF_StrokePoint(bpy.types.PropertyGroup):
    position: bpy.props.FloatVectorProperty(name="Position", size=2,
                                            description="Pixels of the stroke's camera, x right, y down")
    new_line: bpy.props.BoolProperty(description="This point starts a new polyline")


class ISRF_SceneSettings(bpy.types.PropertyGroup):
    dataset: bpy.props.StringProperty(
        name="Dataset", subtype="DIR_PATH",
        description="A folder with transforms.json, or an LLFF / 360 capture (poses_bounds.npy)")
    checkpoint: bpy.props.StringProperty(
        name="Checkpoint", subtype="FILE_PATH",
        description="Open a trained checkpoint.pt instead of a dataset")
    config: bpy.props.StringProperty(name="Config", subtype="FILE_PATH",
                                     description="TOML config for the dataset (optional)")
    overrides: bpy.props.StringProperty(
        name="Overrides", description="Config overrides, space-separated: train.steps=500 ...")

    scene_id: bpy.props.StringProperty(name="Engine scene")
    summary: bpy.props.StringProperty(name="Summary")
    to_blender: bpy.props.FloatVectorProperty(
        name="Engine to Blender", size=16,
        default=(1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1),
        description="The engine's suggested scene-to-Blender transform, row by row")

    job_id: bpy.props.StringProperty()
    job_kind: bpy.props.StringProperty()
    job_stage: bpy.props.StringProperty()
    job_progress: bpy.props.FloatProperty(min=0, max=1, subtype="FACTOR")
    job_eta: bpy.props.FloatProperty(default=-1)
    job_metrics: bpy.props.StringProperty()
    job_message: bpy.props.StringProperty()

    segments: bpy.props.CollectionProperty(type=ISRF_Segment)
    active_segment: bpy.props.IntProperty(name="Active segment", default=0, min=0)
    last_stroke: bpy.props.StringProperty(name="Last stroke")
    brush_radius: bpy.props.FloatProperty(name="Radius", default=8.0, min=1.0, max=256.0,
                                          description="Brush radius in pixels (F or the wheel while painting)")
    brush_negative: bpy.props.BoolProperty(
        name="Negative", description="Paint negative strokes (Ctrl while painting: the other kind)")

    view_mode: bpy.props.EnumProperty(
        name="Engine view", default="OFF",
        items=[("OFF", "Off", "Show Blender's own viewport only"),
               ("COLOUR", "Colour", "The engine's render of the view"),
               ("OVERLAY", "Overlay", "The render with the active segment tinted"),
               ("SEGMENT", "Object", "The active segment alone, over Blender's viewport")],
        description="Draw the engine's render of each 3D viewport over it")
    view_resolution: bpy.props.FloatProperty(
        name="Resolution", default=0.5, min=0.1, max=1.0, subtype="FACTOR",
        description="Size of the engine's render when the view rests, as a fraction of the "
                    "viewport (while it moves: a quick 256-pixel-wide preview)")
    message: bpy.props.StringProperty(name="Message", description="The last error, if any")
    info: bpy.props.StringProperty(name="Info", description="What the last step made")

    mesh_max_faces: bpy.props.IntProperty(name="Max faces", default=200000, min=1000,
                                          max=10_000_000)
    mesh_smoothing: bpy.props.IntProperty(name="Smoothing", default=10, min=0, max=200,
                                          description="Taubin smoothing iterations of the surface")
    mesh_largest: bpy.props.BoolProperty(name="Largest piece only", default=True)

    @property
    def running_job(self) -> bool:
        return bool(self.job_id) and self.job_stage not in ("done", "failed", "cancelled")


CLASSES = (ISRF_Segment, ISRF_StrokePoint, ISRF_SceneSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.isrf = bpy.props.PointerProperty(type=ISRF_SceneSettings)


def unregister() -> None:
    del bpy.types.Scene.isrf
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
