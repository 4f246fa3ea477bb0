"""The ISRF tab of the 3D viewport's sidebar: Engine, Scene, Segments, Export."""

from __future__ import annotations

import bpy

from . import engine_view
from .runtime import LINK

STATE_ICONS = {"stopped": "UNLINKED", "starting": "SORTTIME", "connected": "LINKED",
               "failed": "ERROR"}


class _Tab:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ISRF"


class ISRF_PT_main(_Tab, bpy.types.Panel):
    """The engine: status, start / connect, stop, log"""
    bl_idname = "ISRF_PT_main"
    bl_label = "ISRF Engine"

    def draw(self, context):
        layout = self.layout
        layout.label(text=LINK.message, icon=STATE_ICONS[LINK.state])
        row = layout.row(align=True)
        if LINK.state in ("connected", "starting"):
            row.operator("isrf.engine_stop", icon="CANCEL")
        else:
            row.operator("isrf.engine_start", icon="PLAY")
        row.operator("isrf.engine_log", text="", icon="TEXT")
        settings = context.scene.isrf
        if settings.message:
            layout.label(text=settings.message, icon="ERROR")
        elif settings.info:
            layout.label(text=settings.info, icon="INFO")


class ISRF_PT_scene(_Tab, bpy.types.Panel):
    """The engine scene: open, train, distil, cameras"""
    bl_idname = "ISRF_PT_scene"
    bl_label = "Scene"
    bl_parent_id = "ISRF_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.isrf
        column = layout.column()
        column.enabled = not settings.running_job
        column.prop(settings, "dataset")
        column.prop(settings, "config")
        column.prop(settings, "overrides")
        column.prop(settings, "checkpoint")
        column.operator("isrf.scene_open", icon="FILE_FOLDER")
        if not settings.scene_id:
            return
        layout.label(text=settings.summary, icon="SCENE_DATA")
        row = layout.row(align=True)
        for kind, label in (("train", "Train"), ("features", "Features"), ("distill", "Distil")):
            row.operator("isrf.job_start", text=label).kind = kind
        if settings.running_job:
            eta = f", {settings.job_eta:.0f} s left" if settings.job_eta >= 0 else ""
            layout.progress(factor=settings.job_progress, type="BAR",
                            text=f"{settings.job_stage}{eta}")
            if settings.job_metrics:
                layout.label(text=settings.job_metrics)
            layout.operator("isrf.job_cancel", icon="CANCEL")
        elif settings.job_message:
            layout.label(text=settings.job_message)
        layout.operator("isrf.cameras_import", icon="OUTLINER_OB_CAMERA")


class ISRF_UL_segments(bpy.types.UIList):
    def draw_item(self, context, layout, data, item, icon, active_data, active_property, index=0):
        row = layout.row()
        row.prop(item, "name", text="", emboss=False, icon="MOD_MASK")
        row.label(text=f"{item.voxels} voxels")


class ISRF_PT_segments(_Tab, bpy.types.Panel):
    """Segments: the list, undo / redo / reset, the last stroke"""
    bl_idname = "ISRF_PT_segments"
    bl_label = "Segments"
    bl_parent_id = "ISRF_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.isrf
        row = layout.row()
        row.template_list("ISRF_UL_segments", "", settings, "segments", settings, "active_segment", rows=3)
        buttons = row.column(align=True)
        buttons.operator("isrf.segment_add", text="", icon="ADD")
        buttons.operator("isrf.segment_remove", text="", icon="REMOVE")
        row = layout.row(align=True)
        row.operator("isrf.paint", icon="BRUSH_DATA")
        row.prop(settings, "brush_negative", text="", icon="REMOVE")
        layout.prop(settings, "brush_radius")
        row = layout.row(align=True)
        for action, icon in (("undo", "LOOP_BACK"), ("redo", "LOOP_FORWARDS"), ("reset", "X")):
            row.operator("isrf.segment_history", text=action.title(), icon=icon).action = action
        if settings.last_stroke:
            layout.label(text=settings.last_stroke)


class ISRF_PT_view(_Tab, bpy.types.Panel):
    """The engine's render of this viewport, drawn over it"""
    bl_idname = "ISRF_PT_view"
    bl_label = "View"
    bl_parent_id = "ISRF_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.isrf
        layout.row().prop(settings, "view_mode", expand=True)
        layout.prop(settings, "view_resolution")
        state = engine_view.VIEWS.get(context.area.as_pointer()) if context.area else None
        if state is not None and state.error:
            layout.label(text=state.error, icon="ERROR")


class ISRF_PT_export(_Tab, bpy.types.Panel):
    """The active segment's mesh: into the scene, or to a file"""
    bl_idname = "ISRF_PT_export"
    bl_label = "Mesh"
    bl_parent_id = "ISRF_PT_main"

    def draw(self, context):
        layout, settings = self.layout, context.scene.isrf
        layout.prop(settings, "mesh_max_faces")
        layout.prop(settings, "mesh_smoothing")
        layout.prop(settings, "mesh_largest")
        row = layout.row(align=True)
        row.operator("isrf.mesh_import", icon="IMPORT")
        row.operator("isrf.mesh_export", icon="EXPORT")


CLASSES = (ISRF_PT_main, ISRF_PT_scene, ISRF_PT_view, ISRF_UL_segments, ISRF_PT_segments,
           ISRF_PT_export)
