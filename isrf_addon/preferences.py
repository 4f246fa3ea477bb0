"""The add-on's preferences: which engine to use and how to reach it."""

from __future__ import annotations

from pathlib import Path

import bpy


class ISRF_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    mode: bpy.props.EnumProperty(
        name="Engine", default="LOCAL",
        items=[("LOCAL", "Start a local engine", "Run `isrf serve` as a child of Blender"),
               ("REMOTE", "Connect to an engine", "An engine started elsewhere (host, port, token)")])
    engine_command: bpy.props.StringProperty(
        name="Engine command", subtype="FILE_PATH",
        description="The engine's `isrf` command, or the Python it is installed in "
                    "(e.g. <checkout>/.venv/bin/python)")
    device: bpy.props.EnumProperty(
        name="Device", default="AUTO",
        items=[("AUTO", "Automatic", "CUDA when the engine has it, else the CPU"),
               ("cpu", "CPU", ""), ("cuda", "CUDA", "")])
    host: bpy.props.StringProperty(name="Host", default="127.0.0.1")
    port: bpy.props.IntProperty(name="Port", default=8765, min=1, max=65535)
    token: bpy.props.StringProperty(name="Token", subtype="PASSWORD",
                                    description="The content of the engine's token file")

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "mode", expand=True)
        if self.mode == "LOCAL":
            layout.prop(self, "engine_command")
            layout.prop(self, "device")
        else:
            row = layout.row()
            row.prop(self, "host")
            row.prop(self, "port")
            layout.prop(self, "token")
            if not bpy.app.online_access:
                layout.label(text="Online access is off: only an engine on this machine "
                                  "(127.0.0.1) can be used", icon="INFO")


def preferences(context=None) -> ISRF_AddonPreferences:
    return (context or bpy.context).preferences.addons[__package__].preferences


def engine_command(path: str) -> list[str]:
    """The command line that runs the engine's CLI from the preference's path: a Python
    runs `-m engine.cli`, anything else is taken as the `isrf` command. ValueError when
    it is not an executable file, saying what to set."""
    if not path:
        raise ValueError("set the engine command in the add-on's preferences (the engine's "
                         ".venv/bin/python or its isrf command)")
    resolved = Path(bpy.path.abspath(path)).expanduser()
    if not resolved.is_file():
        raise ValueError(f"engine command {resolved}: no such file (preferences)")
    return [str(resolved), "-m", "engine.cli"] if resolved.name.startswith("python") else [str(resolved)]


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def user_dir(*parts: str) -> Path:
    """Where the add-on writes files (logs, engine state, exports)."""
    try:
        root = Path(bpy.utils.extension_path_user(__package__, create=True))
    except ValueError:   # loaded as a plain module (development), not as an extension
        root = Path(bpy.utils.user_resource("DATAFILES", path="isrf", create=True))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
