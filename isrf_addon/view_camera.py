"""Blender's cameras as the engine's: pinhole intrinsics (pixels, x right, y down) and a
camera-to-world in Blender's world and OpenGL axes, which the engine takes as they are
(`"convention": "opengl", "frame": "blender"`).

The viewport comes down to an OpenGL projection matrix P (camera objects will too): a
camera-space point (x, y, z), z < 0, lands at x_ndc = P00 x / -z - P02 (likewise y),
and pixel u = (x_ndc + 1) W / 2, v = (1 - y_ndc) H / 2 (Blender's y is up, an image's
down). So fx = P00 W / 2, cx = (1 - P02) W / 2, fy = P11 H / 2, cy = (1 + P12) H / 2.
"""

from __future__ import annotations


def intrinsics_from_projection(projection, width: int, height: int) -> list[float]:
    """[fx, fy, cx, cy] of an OpenGL perspective projection (rows indexable) for a
    width x height image."""
    return [projection[0][0] * width / 2, projection[1][1] * height / 2,
            (1 - projection[0][2]) * width / 2, (1 + projection[1][2]) * height / 2]


def engine_camera(projection, camera_to_world, width: int, height: int) -> dict:
    """The engine's explicit camera (docs/serve.md) from a projection and a c2w."""
    c2w = [list(map(float, row)) for row in camera_to_world]
    c2w[3] = [0.0, 0.0, 0.0, 1.0]
    return {"intrinsics": intrinsics_from_projection(projection, width, height), "c2w": c2w,
            "width": int(width), "height": int(height), "convention": "opengl", "frame": "blender"}


def viewport_camera(region, region_3d) -> dict:
    """The 3D viewport's camera at its region's size. An orthographic view has no
    pinhole camera: ValueError, with what to do."""
    if not region_3d.is_perspective:
        raise ValueError("the view is orthographic: switch to perspective (numpad 5)")
    return engine_camera(region_3d.window_matrix, region_3d.view_matrix.inverted(),
                         region.width, region.height)


def object_camera(camera_object, depsgraph, width: int, height: int) -> dict:
    """A camera object's engine camera for a width x height image (its sensor fit, shift
    and lens as Cycles renders them; the object's scale is dropped)."""
    if camera_object.data.type != "PERSP":
        raise ValueError(f"{camera_object.name}: only perspective cameras have a pinhole model")
    projection = camera_object.calc_matrix_camera(depsgraph, x=width, y=height)
    return engine_camera(projection, camera_object.matrix_world.normalized(), width, height)
