"""ISRF for Blender: cut objects out of radiance fields by painting strokes.

The add-on is the user interface only; training and segmentation run in the separate
ISRF engine process (`isrf serve`), which `client.py` talks to. bpy is imported only
when Blender registers the add-on, so the client also runs (and is tested) outside it.
"""


def register():
    from . import panels
    panels.register()


def unregister():
    from . import panels
    panels.unregister()
