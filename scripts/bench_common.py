"""What the benchmark scripts share: merging a run's rows into the results files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable


def save_rows(out_dir: Path, stem: str, rows: list[dict], case_order: list[str],
              markdown: Callable[[list[dict]], str]) -> list[dict]:
    """Write <stem>.json and <stem>.md in out_dir. Rows of cases not run this time are kept
    from the earlier file, so cases can be run one by one. Returns all rows."""
    out_dir.mkdir(parents=True, exist_ok=True)
    results = out_dir / f"{stem}.json"
    earlier = json.loads(results.read_text()) if results.is_file() else []
    ran = {r["case"] for r in rows}
    rows = [r for r in earlier if r["case"] not in ran] + rows
    rows.sort(key=lambda r: case_order.index(r["case"]))
    results.write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(rows))
    return rows
