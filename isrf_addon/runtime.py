"""The add-on's running state: its one engine link, the UI-thread timer that delivers
the engine's answers, and the job's progress in the status bar."""

from __future__ import annotations

import atexit

import bpy

from .engine_link import EngineLink

LINK = EngineLink()
TIMER_SECONDS = 0.1   # the timer's period while nothing is awaited
BUSY_SECONDS = 0.02   # ... and while an answer is: a preview is shown within 20 ms of coming
TICKS: list = []   # more work for the timer, each called with no arguments (engine_view)


def pump() -> int:
    """Deliver finished calls and notice a dead engine; redraw the sidebar if anything
    changed. Returns how many answers were delivered."""
    state = (LINK.state, LINK.message)
    delivered = LINK.deliver()
    LINK.check_alive()
    if delivered or state != (LINK.state, LINK.message):
        redraw()
    return delivered


def _timer() -> float:
    try:
        pump()
        for tick in TICKS:
            tick()
    except Exception as error:   # noqa: BLE001 - a timer that raises is never called again
        LINK.message = f"add-on error: {error}"
    return timer_interval()


def timer_interval() -> float:
    """Seconds until the timer's next run."""
    return BUSY_SECONDS if LINK.busy() else TIMER_SECONDS


def redraw() -> None:
    window_manager = bpy.context.window_manager
    for window in window_manager.windows if window_manager else ():
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "STATUSBAR"):
                area.tag_redraw()


def draw_status(self, context) -> None:
    """The running job in the status bar, as Blender shows its own jobs."""
    settings = getattr(context.scene, "isrf", None)
    if settings is None or not settings.running_job:
        return
    text = f"ISRF {settings.job_stage or settings.job_kind}"
    if settings.job_eta >= 0:
        text += f", {settings.job_eta:.0f} s left"
    self.layout.progress(factor=settings.job_progress, type="BAR", text=text)


def register() -> None:
    bpy.app.timers.register(_timer, first_interval=TIMER_SECONDS, persistent=True)
    bpy.types.STATUSBAR_HT_header.append(draw_status)
    atexit.register(LINK.stop)   # Blender quitting (the engine's --parent-pid is the backstop)


def unregister() -> None:
    atexit.unregister(LINK.stop)
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
    if bpy.app.timers.is_registered(_timer):
        bpy.app.timers.unregister(_timer)
    LINK.stop()   # a local engine never outlives the add-on
