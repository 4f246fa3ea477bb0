"""The add-on's panels: for now one sidebar tab in the 3D viewport."""

import bpy


class ISRF_PT_main(bpy.types.Panel):
    """The ISRF tab of the 3D viewport's sidebar."""

    bl_idname = "ISRF_PT_main"
    bl_label = "ISRF"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "ISRF"

    def draw(self, context):
        self.layout.label(text="ISRF engine: not connected", icon="UNLINKED")


CLASSES = (ISRF_PT_main,)

register, unregister = bpy.utils.register_classes_factory(CLASSES)
