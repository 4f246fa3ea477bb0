"""The modal stroke painter over a 3D viewport (its logic is `painter.py`).

Each release of the left mouse sends one stroke, in this viewport's pixels with its
camera at the moment of the press, to the active segment; the engine view (if on) then
shows the new mask. The painter draws the stroke so far and the brush circle with the
`gpu` module; the status bar lists the keys.
"""

from __future__ import annotations

import bpy

from . import painter as logic
from .operators import _NeedsSegment, send_stroke
from .view_camera import viewport_camera

HELP = ("LMB paint  ·  Ctrl+LMB the other label  ·  Wheel / F radius  ·  Ctrl+Z undo  ·  "
        "MMB navigate  ·  Esc / RMB done")


class ISRF_OT_paint(_NeedsSegment, bpy.types.Operator):
    """Paint strokes on the active segment in this viewport (Esc or right mouse to end)"""
    bl_idname = "isrf.paint"
    bl_label = "Paint Strokes"

    def invoke(self, context, event):
        if context.area is None or context.area.type != "VIEW_3D":
            self.report({"ERROR"}, "paint in a 3D viewport")
            return {"CANCELLED"}
        if not context.region_data.is_perspective:
            self.report({"ERROR"}, "the view is orthographic: switch to perspective (numpad 5)")
            return {"CANCELLED"}
        settings = context.scene.isrf
        self.painter = logic.Painter(settings.brush_radius, context.region.height)
        self.painter.mouse = (event.mouse_region_x, event.mouse_region_y)
        self.camera = None
        self.handle = None
        if not bpy.app.background:
            self.handle = bpy.types.SpaceView3D.draw_handler_add(
                _draw, (self.painter,), "WINDOW", "POST_PIXEL")
        context.workspace.status_text_set(HELP)
        context.window_manager.modal_handler_add(self)
        context.area.tag_redraw()
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        settings, region = context.scene.isrf, context.region
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            self.camera = viewport_camera(region, context.region_data) \
                if context.region_data.is_perspective else None
        answer = logic.handle(self.painter, event.type, event.value, event.mouse_region_x,
                              event.mouse_region_y, event.ctrl, region.width, region.height,
                              settings.brush_negative)
        settings.brush_radius = self.painter.radius
        context.area.tag_redraw()
        if answer == logic.PASS_THROUGH:
            return {"PASS_THROUGH"}
        if answer == logic.FINISH:
            self.finish(context)
            return {"FINISHED"}
        if answer == logic.UNDO:
            bpy.ops.isrf.segment_history(action="undo")
        elif isinstance(answer, logic.Stroke):
            if self.camera is None:
                self.report({"WARNING"}, "the view is orthographic: the stroke was not sent")
            else:
                send_stroke(self, context, self.camera, answer.polylines, answer.radius,
                            answer.label)
        return {"RUNNING_MODAL"}

    def cancel(self, context):
        self.finish(context)

    def finish(self, context) -> None:
        if self.handle is not None:
            bpy.types.SpaceView3D.draw_handler_remove(self.handle, "WINDOW")
            self.handle = None
        context.workspace.status_text_set(None)
        if context.area is not None:
            context.area.tag_redraw()


def _draw(painter: logic.Painter) -> None:
    """The brush circle and the stroke so far, in region pixels."""
    import gpu
    from gpu_extras.batch import batch_for_shader
    shader = gpu.shader.from_builtin("POLYLINE_UNIFORM_COLOR")
    region = bpy.context.region
    shader.uniform_float("viewportSize", (region.width, region.height))
    gpu.state.blend_set("ALPHA")
    shader.uniform_float("color", (1.0, 1.0, 1.0, 0.8))
    shader.uniform_float("lineWidth", 1.5)
    batch_for_shader(shader, "LINE_STRIP", {"pos": painter.circle()}).draw(shader)
    trail = painter.trail()
    if len(trail) >= 2:
        shader.uniform_float("color", painter.colour())
        # the stroke's own width: what the engine will paint
        shader.uniform_float("lineWidth", 2 * painter.radius)
        batch_for_shader(shader, "LINE_STRIP", {"pos": trail}).draw(shader)
    gpu.state.blend_set("NONE")


CLASSES = (ISRF_OT_paint,)
