"""The stroke painter's logic (isrf_addon/painter.py, no bpy): Blender events -> stroke
points -> the engine's pixels, the brush, and what it draws."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.segment.strokes import parse_stroke, rasterize
from isrf_addon.painter import (FINISH, PASS_THROUGH, REDRAW, UNDO, Painter, Stroke, handle,
                                region_to_engine)

W, H = 200, 100


def events(painter: Painter, *sequence, negative_default=False):
    """Feed (type, value, x, y, ctrl) events; return what each one gave."""
    return [handle(painter, kind, value, x, y, ctrl, W, H, negative_default)
            for kind, value, x, y, ctrl in sequence]


def drag(points, ctrl=False):
    (x0, y0), *rest = points
    return [("LEFTMOUSE", "PRESS", x0, y0, ctrl)] + [("MOUSEMOVE", "NOTHING", x, y, ctrl) for x, y in rest] + \
        [("LEFTMOUSE", "RELEASE", *points[-1], ctrl)]


def test_region_pixels_become_engine_pixels_with_y_down():
    assert region_to_engine(0, 0, H) == (0.5, H - 0.5)          # bottom-left pixel's centre
    assert region_to_engine(W - 1, H - 1, H) == (W - 0.5, 0.5)  # top-right


def test_a_drag_is_one_positive_stroke_in_engine_pixels():
    painter = Painter(radius=8, region_height=H)
    answers = events(painter, *drag([(10, 20), (11, 20), (30, 20), (50, 40)]))
    stroke = answers[-1]
    assert isinstance(stroke, Stroke) and stroke.label == "positive" and stroke.radius == 8
    # the 1-pixel move is closer than a quarter radius: dropped; the others kept
    assert stroke.polylines == [[(10.5, 79.5), (30.5, 79.5), (50.5, 59.5)]]
    assert painter.trail() == []                                   # nothing left drawn
    # the engine accepts it, and it paints the pixels under the drag
    parsed = parse_stroke({"camera": {"view": 0}, "polylines": stroke.polylines,
                           "radius": stroke.radius, "label": stroke.label})
    painted = rasterize(parsed.polylines, parsed.radius, W, H)
    assert painted[79, 10] and painted[79, 30] and painted[59, 50] and not painted[0, 0]


def test_ctrl_paints_negative_and_the_toggle_swaps_it():
    assert events(Painter(4, H), *drag([(5, 5), (40, 5)], ctrl=True))[-1].label == "negative"
    toggled = events(Painter(4, H), *drag([(5, 5), (40, 5)]), negative_default=True)
    assert toggled[-1].label == "negative"
    assert events(Painter(4, H), *drag([(5, 5), (40, 5)], ctrl=True),
                  negative_default=True)[-1].label == "positive"


def test_wheel_and_f_resize_the_brush_and_esc_cancels_a_resize():
    painter = Painter(radius=10, region_height=H)
    events(painter, ("WHEELUPMOUSE", "PRESS", 50, 50, False))
    assert painter.radius == pytest.approx(11.5)
    events(painter, ("WHEELDOWNMOUSE", "PRESS", 50, 50, False), ("WHEELDOWNMOUSE", "PRESS", 50, 50, False))
    assert painter.radius == pytest.approx(10 / 1.15)
    for _ in range(100):
        painter.wheel(1)
    assert painter.radius == 256                                   # clamped to the engine's limit
    painter = Painter(radius=10, region_height=H)
    answers = events(painter, ("MOUSEMOVE", "NOTHING", 100, 50, False), ("F", "PRESS", 100, 50, False),
                     ("MOUSEMOVE", "NOTHING", 120, 50, False))
    assert painter.radius == pytest.approx(30)                     # centre one radius to the left
    centre = (90, 50)
    assert all(math.hypot(x - centre[0], y - centre[1]) == pytest.approx(30) for x, y in painter.circle())
    # a click confirms the radius and starts no stroke
    assert events(painter, ("LEFTMOUSE", "PRESS", 120, 50, False))[0] == REDRAW
    assert events(painter, ("LEFTMOUSE", "RELEASE", 120, 50, False))[0] == REDRAW
    assert painter.radius == pytest.approx(30)
    # Esc while resizing goes back to the old radius and does not end the session
    events(painter, ("F", "PRESS", 120, 50, False), ("MOUSEMOVE", "NOTHING", 200, 50, False))
    assert events(painter, ("ESC", "PRESS", 200, 50, False)) == [REDRAW]
    assert painter.radius == pytest.approx(30)
    assert answers[0] == REDRAW


def test_esc_and_right_mouse_finish_navigation_passes_and_ctrl_z_undoes():
    assert events(Painter(4, H), ("ESC", "PRESS", 5, 5, False)) == [FINISH]
    painter = Painter(4, H)
    events(painter, ("LEFTMOUSE", "PRESS", 5, 5, False))
    assert events(painter, ("RIGHTMOUSE", "PRESS", 5, 5, False)) == [FINISH]
    assert painter.trail() == []                                   # the unfinished stroke is dropped
    assert events(Painter(4, H), ("MIDDLEMOUSE", "PRESS", 5, 5, False)) == [PASS_THROUGH]
    assert events(Painter(4, H), ("Z", "PRESS", 5, 5, True)) == [UNDO]
    assert events(Painter(4, H), ("Z", "PRESS", 5, 5, False)) == [REDRAW]
    # a click outside the region (on the sidebar) is Blender's
    assert events(Painter(4, H), ("LEFTMOUSE", "PRESS", W + 5, 5, False)) == [PASS_THROUGH]


def test_the_trail_and_circle_follow_the_mouse():
    painter = Painter(radius=6, region_height=H)
    events(painter, ("LEFTMOUSE", "PRESS", 10, 10, False), ("MOUSEMOVE", "NOTHING", 20, 10, False),
           ("MOUSEMOVE", "NOTHING", 21, 10, False))
    assert painter.trail() == [(10, 10), (20, 10), (21, 10)]      # the mouse closes the trail
    circle = np.array(painter.circle())
    assert np.allclose(circle[0], circle[-1]) and np.allclose(circle.mean(0), (21, 10), atol=0.2)
    assert painter.colour()[1] > painter.colour()[0]               # positive: green
