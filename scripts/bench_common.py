"""What the benchmark scripts share: merging a run's rows into the results files, and
measuring the peak memory CPU tensors take during a block."""

from __future__ import annotations

import ctypes
import json
import threading
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Callable


def save_rows(out_dir: Path, stem: str, rows: list[dict], case_order: list[str] | None,
              markdown: Callable[[list[dict]], str]) -> list[dict]:
    """Write <stem>.json and <stem>.md in out_dir. Rows of cases not run this time are kept
    from the earlier file, so cases can be run one by one. Rows are sorted by case_order
    (None: the earlier cases first, in their order, then this run's). Returns all rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / f"{stem}.json"
    earlier = json.loads(results.read_text()) if results.is_file() else []
    ran = {r["case"] for r in rows}
    rows = [r for r in earlier if r["case"] not in ran] + rows
    if case_order is not None:
        rows.sort(key=lambda r: case_order.index(r["case"]))
    results.write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(rows))
    return rows


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]


@cache
def _mallinfo2():
    """glibc's mallinfo2 (2.33+), or None where there is none."""
    try:
        function = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    function.restype = _MallInfo2
    return function


def _heap_in_use() -> int | None:
    """Bytes in use on the C heap (arena blocks + mmapped blocks), where CPU tensors live;
    None without glibc's mallinfo2."""
    mallinfo2 = _mallinfo2()
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    return info.uordblks + info.hblkhd


@contextmanager
def heap_peak(interval: float = 0.001):
    """Measures the block's peak heap use above the level at its start: yields a dict whose
    "mb" is set on exit (None without glibc). A thread samples every `interval` seconds, so
    time the block's work elsewhere. Unlike peak RSS this does not count freed pages the
    allocator keeps, nor what was loaded before."""
    result = {"mb": None}
    start = _heap_in_use()
    if start is None:
        yield result
        return
    peak, done = [start], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _heap_in_use())
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result["mb"] = round((max(peak[0], _heap_in_use()) - start) / 2**20)
