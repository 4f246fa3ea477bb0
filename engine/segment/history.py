"""A segment and its undo history: immutable states, pushed, undone and redone.

A `SegmentState` is never changed in place; every stroke, refinement and reset makes a
new one and pushes it, so renders reading the current state never see half of a step.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from pydantic import ValidationError

from engine.config import SegmentConfig
from engine.errors import IsrfError
from engine.segment.strokes import Refine, Stroke


def params_with(base: SegmentConfig, overrides: dict, source: str) -> SegmentConfig:
    """`base` with some keys replaced, validated as a SegmentConfig (errors name the key)."""
    unknown = set(overrides) - {f.name for f in dataclasses.fields(SegmentConfig)}
    if unknown:
        raise IsrfError(f"{source}: unknown parameter(s) {', '.join(sorted(unknown))}")
    try:
        return SegmentConfig(**{**dataclasses.asdict(base), **overrides})
    except ValidationError as error:
        first = error.errors()[0]
        raise IsrfError(f"{source}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@dataclass(frozen=True)
class SegmentState:
    strokes: tuple[Stroke | Refine, ...]    # the steps that made it, in order
    positive: torch.Tensor            # [M] bool
    negative: torch.Tensor            # [M] bool
    positive_centres: torch.Tensor    # [Kp, D] unit length
    negative_centres: torch.Tensor    # [Kn, D] unit length

    @classmethod
    def empty(cls, size: int, dims: int, device) -> "SegmentState":
        no = torch.zeros(size, dtype=torch.bool, device=device)
        none = torch.zeros(0, dims, device=device)
        return cls((), no, no.clone(), none, none.clone())


@dataclass
class Segment:
    name: str
    params: SegmentConfig
    state: SegmentState
    undo_stack: list[SegmentState] = field(default_factory=list)
    redo_stack: list[SegmentState] = field(default_factory=list)

    def push(self, state: SegmentState) -> None:
        """Make `state` current (undoable); what was undone can no longer be redone."""
        self.undo_stack.append(self.state)
        self.redo_stack.clear()
        self.state = state

    def undo(self) -> bool:
        """Step back one step; False when there is nothing to undo."""
        if not self.undo_stack:
            return False
        self.redo_stack.append(self.state)
        self.state = self.undo_stack.pop()
        return True

    def redo(self) -> bool:
        if not self.redo_stack:
            return False
        self.undo_stack.append(self.state)
        self.state = self.redo_stack.pop()
        return True

    def restart(self, empty: SegmentState) -> tuple[Stroke | Refine, ...]:
        """Forget the state and the whole history (for a replay); returns the steps the
        state was made of."""
        steps = self.state.strokes
        self.state = empty
        self.undo_stack.clear()
        self.redo_stack.clear()
        return steps
