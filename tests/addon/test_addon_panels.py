"""Every panel's `draw` (and the segment list's rows and the status bar) runs in bpy
5.0.1 in each state the add-on can be in, and asks only for what Blender has.

Background mode has no window to draw into, so each `draw` gets a recording layout
that checks every call against Blender's own RNA as a real UILayout would: the method
exists, each `prop` names a property of its data, each `operator` a registered operator
and only its properties, each icon is one of Blender's, and template_list's class and
collections exist. A typo in a panel fails here instead of in an artist's sidebar.
"""

from __future__ import annotations

import importlib.util

import pytest

from test_addon import REPO, run_python

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("bpy") is None, reason="needs bpy: pip install -e '.[dev]'"
)

SCRIPT = r"""
import sys
import bpy
sys.path.insert(0, {repo!r})
import isrf_addon
isrf_addon.register()
from isrf_addon import engine_view, panels, runtime

LAYOUT = bpy.types.UILayout.bl_rna
ICONS = set(LAYOUT.functions["label"].parameters["icon"].enum_items.keys())
calls = []


class OperatorProperties:
    def __init__(self, idname):
        module, name = idname.split(".")
        self.__dict__["_rna"] = getattr(getattr(bpy.ops, module), name).get_rna_type()

    def __setattr__(self, name, value):
        assert name in self._rna.properties, f"{{self._rna.identifier}} has no property {{name!r}}"


class Layout:
    def __setattr__(self, name, value):
        assert name in LAYOUT.properties, f"UILayout has no attribute {{name!r}}"

    def __getattr__(self, name):
        assert name in LAYOUT.functions, f"UILayout has no method {{name!r}}"
        def call(*args, **kwargs):
            icon = kwargs.get("icon")
            assert icon is None or icon in ICONS, f"no icon {{icon!r}}"
            calls.append(name)
            if name == "prop":
                data, prop = args[:2]
                assert prop in data.bl_rna.properties, f"{{data}} has no property {{prop!r}}"
            if name == "operator":
                return OperatorProperties(args[0])
            if name == "template_list":
                cls, _, data, prop, active, active_prop = args[:6]
                assert hasattr(bpy.types, cls), f"no UIList {{cls}}"
                assert prop in data.bl_rna.properties and active_prop in active.bl_rna.properties
            return Layout()
        return call


class Holder:
    def __init__(self):
        self.layout = Layout()


def draw_everything(state):
    for panel in panels.CLASSES:
        if issubclass(panel, bpy.types.Panel):
            before = len(calls)
            panel.draw(Holder(), bpy.context)
            assert len(calls) > before, f"{{panel.__name__}} drew nothing in state {{state}}"
    settings = bpy.context.scene.isrf
    for index, item in enumerate(settings.segments):
        panels.ISRF_UL_segments.draw_item(None, bpy.context, Layout(), settings, item, 0,
                                          settings, "active_segment", index)
    runtime.draw_status(Holder(), bpy.context)


settings = bpy.context.scene.isrf
draw_everything("stopped")
runtime.LINK.state, runtime.LINK.message = "connected", "engine 0.1.0 on cpu"
settings.scene_id, settings.summary = "scene-1", "40 images 48x48, trained: colour"
for name in ("ball", "cube"):
    item = settings.segments.add()
    item.name, item.voxels, item.strokes = name, 1200, 2
settings.last_stroke = "1200 voxels, 0.31 s"
settings.job_id, settings.job_kind, settings.job_stage = "job-1", "train", "training"
settings.job_progress, settings.job_eta, settings.job_metrics = 0.4, 12.0, "psnr 24.1"
assert settings.running_job
draw_everything("running job")
settings.job_stage, settings.job_message = "done", "train done: psnr 27.3"
settings.message = "the engine said no"
settings.view_mode = "OVERLAY"
draw_everything("finished job, an error")
runtime.LINK.state = "failed"
draw_everything("failed")
runtime.LINK.state = "stopped"
isrf_addon.unregister()
print("CALLS", len(calls))
"""


def test_every_panel_draws_in_every_state(tmp_path):
    result = run_python(["-c", SCRIPT.format(repo=str(REPO))], tmp_path)
    calls = int(result.stdout.split("CALLS")[1].split()[0])
    assert calls > 100
