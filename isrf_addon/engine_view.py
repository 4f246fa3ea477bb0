"""The engine's render of each 3D viewport, drawn over it as a GPU texture.

The runtime's timer calls `update()` ten times a second. For every 3D viewport of the
open windows whose scene shows the engine view, it compares the view (camera, size, what
to show, the active segment's strokes) with the one it last saw. While the view moves it
asks for quick previews (256 px wide, the engine's "preview" quality), one at a time;
once the view has rested REST_SECONDS, one full render at the chosen resolution, asked
for in bands of rows (one band's camera is the view's with its principal point moved),
which a change of view abandons. The answers are applied on the UI thread; the draw handler turns the newest picture into a
texture (GPU work belongs in a draw callback) and draws it over the region.

Nothing here blocks: renders go through the link's worker, and a viewport never has more
than one render in flight, so a slow engine lowers the frame rate, not the UI's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import bpy
import numpy as np

from .runtime import LINK, TICKS
from .view_camera import viewport_camera

PREVIEW_WIDTH = 256
REST_SECONDS = 0.3
BAND_ROWS = 64   # a full render comes in bands of rows, so that a moving view or a new
                 # stroke waits for one band (~0.3 s on 2 cores), not a whole render
MODES = {"COLOUR": "colour", "OVERLAY": "overlay", "SEGMENT": "segment"}


@dataclass
class ViewState:
    """One viewport's engine view."""
    key: tuple | None = None              # the view as last seen
    changed_at: float = 0.0
    in_flight: bool = False
    shown: tuple | None = None            # (key, quality) of the newest picture
    picture: np.ndarray | None = None     # RGBA uint8 [H, W, 4], waiting to be uploaded
    texture: object | None = None         # gpu.types.GPUTexture of the newest picture
    delivered_at: float = 0.0             # when the newest picture arrived (benchmarks)
    error: str = ""
    seconds: float = 0.0                  # the engine's time for the last render
    bands: list = field(default_factory=list)   # the full render's rows so far, top first


VIEWS: dict[int, ViewState] = {}          # by the viewport area's pointer
_draw_handle = None


def view_key(camera: dict, mode: str, segment: str | None, segment_version: tuple,
             resolution: float) -> tuple:
    """What a render depends on, hashable: two equal keys give the same picture."""
    c2w = tuple(round(v, 6) for row in camera["c2w"] for v in row)
    intrinsics = tuple(round(v, 4) for v in camera["intrinsics"])
    return (c2w, intrinsics, camera["width"], camera["height"], mode, segment,
            segment_version, round(resolution, 3))


def next_request(state: ViewState, now: float) -> str | None:
    """The quality to ask for now ("preview" / "full"), or None: nothing to do."""
    if state.in_flight or state.key is None:
        return None
    if state.shown == (state.key, "full"):
        return None
    if now - state.changed_at >= REST_SECONDS:
        return "full"
    return None if state.shown == (state.key, "preview") else "preview"


def texture_pixels(picture: np.ndarray) -> np.ndarray:
    """RGBA uint8 [H, W, 4] (row 0 at the top) -> float32 [H * W * 4] in [0, 1], rows
    from the bottom, as a GPU texture takes them."""
    if picture.ndim != 3 or picture.shape[2] != 4 or picture.dtype != np.uint8:
        raise ValueError(f"a picture is RGBA uint8 [H, W, 4], got {picture.dtype} {picture.shape}")
    return (np.ascontiguousarray(picture[::-1], np.float32) / 255.0).ravel()


def _viewports():
    """(area pointer, scene, region, region_3d) of every 3D viewport in the open windows."""
    window_manager = bpy.context.window_manager
    for window in window_manager.windows if window_manager else ():
        for area in window.screen.areas:
            if area.type != "VIEW_3D":
                continue
            region = next((r for r in area.regions if r.type == "WINDOW"), None)
            space = area.spaces.active
            if region is not None and space.region_3d is not None:
                yield area.as_pointer(), window.scene, region, space.region_3d, area


def update(now: float | None = None) -> None:
    """Ask for the renders the viewports need (called from the runtime's timer)."""
    now = time.monotonic() if now is None else now
    seen = set()
    for pointer, scene, region, region_3d, area in _viewports():
        settings = scene.isrf
        if settings.view_mode == "OFF" or LINK.state != "connected" or not settings.scene_id:
            continue
        seen.add(pointer)
        state = VIEWS.setdefault(pointer, ViewState())
        try:
            camera = viewport_camera(region, region_3d)
        except ValueError as error:        # orthographic: no pinhole camera to render
            state.error, state.texture, state.key = str(error), None, None
            continue
        request_for_view(state, settings, camera, now, area.tag_redraw)
    for pointer in list(VIEWS):
        if pointer not in seen:
            del VIEWS[pointer]


def request_for_view(state: ViewState, settings, camera: dict, now: float,
                     on_picture=lambda: None) -> None:
    """Ask for the render that one view (an engine camera, docs/serve.md) needs now, if
    any; `on_picture()` runs on the UI thread when it has arrived."""
    mode = MODES[settings.view_mode]
    segment, version = None, ()
    if mode != "colour" and settings.active_segment < len(settings.segments):
        item = settings.segments[settings.active_segment]
        segment, version = item.name, (item.strokes, item.voxels)
    elif mode != "colour":
        mode = "colour"                    # no segment yet: the colour render
    key = view_key(camera, mode, segment, version, settings.view_resolution)
    if key != state.key:
        state.key, state.changed_at, state.bands = key, now, []
    quality = next_request(state, now)
    if quality is None:
        return
    scene_id, asked = settings.scene_id, (key, quality)
    if quality == "preview":
        request, scale, band = camera, min(1.0, PREVIEW_WIDTH / max(1, camera["width"])), None
    else:
        whole = scaled_camera(camera, settings.view_resolution)
        row = BAND_ROWS * len(state.bands)
        request, scale, band = band_camera(whole, row, BAND_ROWS), 1.0, (row, whole["height"])

    def render(client):
        return client.render(scene_id, request, scale, mode, segment, quality)

    def done(answer) -> None:
        state.in_flight, state.seconds = False, answer["seconds"]
        if state.key != key:              # the view moved on while this was rendered
            return
        if band is None:
            state.picture, state.shown = answer["picture"], asked
        else:
            state.bands.append(answer["picture"])
            if band[0] + len(answer["picture"]) < band[1]:
                return                    # more bands to come
            state.picture, state.shown = np.concatenate(state.bands), asked
            state.bands = []
        state.error, state.delivered_at = "", time.monotonic()
        on_picture()

    def failed(error: Exception) -> None:
        state.in_flight, state.error, state.bands = False, str(error), []
        state.shown = asked            # not asked again until the view changes

    state.in_flight = True
    LINK.submit(render, done, failed)


def scaled_camera(camera: dict, scale: float) -> dict:
    """An explicit engine camera at `scale` times its size (as the engine scales one)."""
    width, height = max(1, round(camera["width"] * scale)), max(1, round(camera["height"] * scale))
    fx, fy, cx, cy = camera["intrinsics"]
    sx, sy = width / camera["width"], height / camera["height"]
    return {**camera, "intrinsics": [fx * sx, fy * sy, cx * sx, cy * sy],
            "width": width, "height": height}


def band_camera(camera: dict, row: int, rows: int) -> dict:
    """The part of an explicit camera's image from pixel row `row`, `rows` high (fewer at
    the bottom): the same camera with its principal point moved up."""
    fx, fy, cx, cy = camera["intrinsics"]
    return {**camera, "intrinsics": [fx, fy, cx, cy - row],
            "height": min(rows, camera["height"] - row)}


# ----- drawing ---------------------------------------------------------------------------
def draw() -> None:
    """SpaceView3D draw handler (POST_PIXEL): the newest picture over the region."""
    context = bpy.context
    state = VIEWS.get(context.area.as_pointer()) if context.area else None
    if state is None or context.scene.isrf.view_mode == "OFF":
        return
    import gpu
    from gpu_extras.presets import draw_texture_2d
    if state.picture is not None:
        height, width = state.picture.shape[:2]
        buffer = gpu.types.Buffer("FLOAT", width * height * 4, texture_pixels(state.picture))
        state.texture = gpu.types.GPUTexture((width, height), format="RGBA16F", data=buffer)
        state.picture = None
    if state.texture is None:
        return
    gpu.state.blend_set("ALPHA")
    draw_texture_2d(state.texture, (0, 0), context.region.width, context.region.height)
    gpu.state.blend_set("NONE")


def register() -> None:
    global _draw_handle
    TICKS.append(update)
    if not bpy.app.background:     # no GPU drawing in background mode
        _draw_handle = bpy.types.SpaceView3D.draw_handler_add(draw, (), "WINDOW", "POST_PIXEL")


def unregister() -> None:
    global _draw_handle
    if update in TICKS:
        TICKS.remove(update)
    if _draw_handle is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_draw_handle, "WINDOW")
        _draw_handle = None
    VIEWS.clear()
