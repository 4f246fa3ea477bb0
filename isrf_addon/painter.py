"""The stroke painter's logic, free of bpy so that it can be tested on its own: mouse
events in a region's pixels become polylines in the engine's pixel frame, and what the
painter draws (the stroke so far, the brush circle) as 2D geometry.

Frames. Blender gives mouse positions in region pixels from the bottom-left corner, y up,
integer at pixel centres' lower-left corners; the engine's pixels run from the top-left
corner, y down, with pixel centres at +0.5 (its intrinsics put the principal point of a
centred camera at W / 2). So region (x, y) is engine (x + 0.5, H - y - 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

MIN_RADIUS, MAX_RADIUS = 1.0, 256.0
WHEEL_FACTOR = 1.15       # one wheel notch scales the brush by this
SPACING = 0.25            # a new point once the mouse has moved this many radii
MAX_POINTS = 4096         # per stroke: longer strokes keep every other point (the engine's
                          # limit is larger; a stroke this long is already dense)
CIRCLE_SEGMENTS = 48


def region_to_engine(x: float, y: float, height: int) -> tuple[float, float]:
    """A region pixel (bottom-left origin, y up) in the engine's pixel frame."""
    return x + 0.5, height - y - 0.5


def clamp_radius(radius: float) -> float:
    return min(MAX_RADIUS, max(MIN_RADIUS, radius))


@dataclass
class Stroke:
    """A finished stroke, ready for the engine: polylines in engine pixels."""
    polylines: list[list[tuple[float, float]]]
    radius: float
    label: str                      # positive | negative


@dataclass
class Painter:
    """State of one painting session over one region.

    press / move / release build a polyline while the button is down (a press with
    `negative` paints a negative stroke). A stroke is sent on release: one polyline per
    button press, so each release is one engine stroke, undone by one undo."""
    radius: float
    region_height: int
    pressed: bool = False
    negative: bool = False
    points: list[tuple[float, float]] = field(default_factory=list)   # region pixels
    mouse: tuple[float, float] = (0.0, 0.0)
    resizing_from: tuple[float, float] | None = None   # F: anchor of the radius drag
    radius_before: float = 0.0

    # ----- painting ----------------------------------------------------------------
    def press(self, x: float, y: float, negative: bool) -> None:
        self.mouse = (x, y)
        if self.resizing_from is not None:
            self.resizing_from = None          # a click confirms the new radius
            return
        self.pressed, self.negative, self.points = True, negative, [(x, y)]

    def move(self, x: float, y: float) -> None:
        self.mouse = (x, y)
        if self.resizing_from is not None:
            ax, ay = self.resizing_from
            self.radius = clamp_radius(math.hypot(x - ax, y - ay))
            return
        if not self.pressed:
            return
        last_x, last_y = self.points[-1]
        if math.hypot(x - last_x, y - last_y) >= max(1.0, SPACING * self.radius):
            self.points.append((x, y))
            if len(self.points) > MAX_POINTS:
                self.points = self.points[::2]

    def release(self) -> Stroke | None:
        """The stroke that the button's release finishes (None if none was started)."""
        if not self.pressed:
            return None
        self.pressed = False
        line = [region_to_engine(x, y, self.region_height) for x, y in self.points]
        self.points = []
        return Stroke([line], self.radius, "negative" if self.negative else "positive")

    def cancel_stroke(self) -> None:
        self.pressed, self.points = False, []

    # ----- the brush ----------------------------------------------------------------
    def wheel(self, notches: int) -> None:
        """Scroll: up (positive notches) grows the brush, down shrinks it."""
        self.radius = clamp_radius(self.radius * WHEEL_FACTOR ** notches)

    def start_resize(self) -> None:
        """F: until the next click, the radius is the mouse's distance from a centre put
        one radius to the left of it (as Blender's own brushes do)."""
        self.radius_before = self.radius
        x, y = self.mouse
        self.resizing_from = (x - self.radius, y)

    def cancel_resize(self) -> bool:
        """Esc / right mouse while resizing: back to the old radius. False if not resizing."""
        if self.resizing_from is None:
            return False
        self.radius, self.resizing_from = self.radius_before, None
        return True

    # ----- what to draw ---------------------------------------------------------------
    def circle(self) -> list[tuple[float, float]]:
        """The brush outline (a closed loop, region pixels) around the mouse, or around
        the resize centre while resizing."""
        cx, cy = self.resizing_from or self.mouse
        return [(cx + self.radius * math.cos(a), cy + self.radius * math.sin(a))
                for a in (2 * math.pi * i / CIRCLE_SEGMENTS for i in range(CIRCLE_SEGMENTS + 1))]

    def trail(self) -> list[tuple[float, float]]:
        """The stroke so far (region pixels), with the mouse as its last point."""
        return self.points + [self.mouse] if self.pressed else []

    def colour(self) -> tuple[float, float, float, float]:
        return (0.95, 0.25, 0.2, 0.9) if self.negative else (0.3, 0.9, 0.35, 0.9)


# ----- events -------------------------------------------------------------------------
PASS_THROUGH = "pass"   # let Blender have the event (navigation, the sidebar)
FINISH = "finish"       # Esc / right mouse: the painting session ends
UNDO = "undo"           # Ctrl+Z: undo the active segment's last stroke
REDRAW = "redraw"
NAVIGATION = {"MIDDLEMOUSE", "TRACKPADPAN", "TRACKPADZOOM", "MOUSEROTATE", "NDOF_MOTION",
              "NUMPAD_0", "NUMPAD_1", "NUMPAD_2", "NUMPAD_3", "NUMPAD_4", "NUMPAD_5",
              "NUMPAD_6", "NUMPAD_7", "NUMPAD_8", "NUMPAD_9", "NUMPAD_PERIOD", "HOME"}


def handle(painter: Painter, kind: str, value: str, x: float, y: float, ctrl: bool,
           width: int, height: int, negative_default: bool = False):
    """One Blender event (its type, value, region mouse position, Ctrl) -> what the
    operator does: a finished `Stroke` to send, FINISH, UNDO, REDRAW or PASS_THROUGH.

    Left mouse paints (Ctrl: the other label than the default); the wheel or F resizes
    the brush; Esc or right mouse ends (or cancels a resize). A press outside the region
    passes through, so the sidebar stays usable while painting."""
    inside = 0 <= x < width and 0 <= y < height
    if kind == "MOUSEMOVE":
        painter.move(x, y)
        return REDRAW
    if kind == "LEFTMOUSE":
        if value == "PRESS":
            if not inside and painter.resizing_from is None:
                return PASS_THROUGH
            painter.press(x, y, negative=ctrl != negative_default)
            return REDRAW
        if value == "RELEASE":
            return painter.release() or REDRAW
    if kind in ("WHEELUPMOUSE", "WHEELDOWNMOUSE") and inside:
        painter.wheel(1 if kind == "WHEELUPMOUSE" else -1)
        return REDRAW
    if value != "PRESS":
        return PASS_THROUGH if kind in NAVIGATION else REDRAW
    if kind == "F":
        painter.start_resize()
        return REDRAW
    if kind in ("ESC", "RIGHTMOUSE"):
        if painter.cancel_resize():
            return REDRAW
        painter.cancel_stroke()
        return FINISH
    if kind == "Z" and ctrl:
        return UNDO
    return PASS_THROUGH if kind in NAVIGATION else REDRAW
