"""ISRF for Blender: cut objects out of radiance fields by painting strokes.

The add-on is the user interface only; training and segmentation run in the separate
ISRF engine process (`isrf serve`), which `client.py` talks to. bpy is imported only
when Blender registers the add-on, so the client also runs (and is tested) outside it.
"""


def register():
    import bpy

    from . import engine_view, operators, painting, panels, preferences, properties, runtime

    bpy.utils.register_class(preferences.ISRF_AddonPreferences)
    properties.register()
    for cls in (*operators.CLASSES, *painting.CLASSES, *panels.CLASSES):
        bpy.utils.register_class(cls)
    runtime.register()
    engine_view.register()


def unregister():
    import bpy

    from . import engine_view, operators, painting, panels, preferences, properties, runtime

    engine_view.unregister()
    runtime.unregister()
    for cls in reversed((*operators.CLASSES, *painting.CLASSES, *panels.CLASSES)):
        bpy.utils.unregister_class(cls)
    properties.unregister()
    bpy.utils.unregister_class(preferences.ISRF_AddonPreferences)
