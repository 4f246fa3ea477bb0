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
        # The button sits in the sidebar: paint in the area's main region, whatever
        # region the operator was started from.
        self.region = next(r for r in context.area.regions if r.type == "WINDOW")
        self.region_3d = context.area.spaces.active.region_3d
        self.paint_width = _uncovered_width(context.area, self.region)
        if not self.region_3d.is_perspective:
            self.report({"ERROR"}, "the view is orthographic: switch to perspective (numpad 5)")
            return {"CANCELLED"}
        settings = context.scene.isrf
        self.painter = logic.Painter(settings.brush_radius, self.region.height)
        self.painter.mouse = self.mouse(event)
        self.camera = None
        self.handle = None
        if not bpy.app.background:
            self.handle = bpy.types.SpaceView3D.draw_handler_add(
                _draw, (self.painter, self.region.as_pointer()), "WINDOW", "POST_PIXEL")
        context.workspace.status_text_set(HELP)
        context.window_manager.modal_handler_add(self)
        context.area.tag_redraw()
        return {"RUNNING_MODAL"}

    def mouse(self, event) -> tuple[int, int]:
        """The mouse in the painted region's pixels (events come in the window's)."""
        return event.mouse_x - self.region.x, event.mouse_y - self.region.y

    def modal(self, context, event):
        settings, region = context.scene.isrf, self.region
        if event.type == "LEFTMOUSE" and event.value == "PRESS":
            self.camera = viewport_camera(region, self.region_3d) \
                if self.region_3d.is_perspective else None
        x, y = self.mouse(event)
        answer = logic.handle(self.painter, event.type, event.value, x, y, event.ctrl,
                              self.paint_width, region.height, settings.brush_negative)
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


def _uncovered_width(area, region) -> int:
    """How much of the region, from its left, the sidebar does not cover (with region
    overlap, the sidebar lies over the main region: clicks there are the sidebar's)."""
    sidebar = next((r for r in area.regions if r.type == "UI"), None)
    if sidebar is not None and sidebar.width > 1 and region.x < sidebar.x < region.x + region.width:
        return sidebar.x - region.x
    return region.width


def _draw(painter: logic.Painter, region_pointer: int) -> None:
    """The brush circle and the stroke so far, in region pixels (of the painted region
    only: the handler runs for every 3D viewport)."""
    region = bpy.context.region
    if region is None or region.as_pointer() != region_pointer:
        return
    import gpu
    from gpu_extras.batch import batch_for_shader
    shader = gpu.shader.from_builtin("POLYLINE_UNIFORM_COLOR")
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
