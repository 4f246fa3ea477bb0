"""Real captures the tests may read from ../shared (beside the checkout, in CI too)."""

from pathlib import Path

import pytest

FERN = Path(__file__).resolve().parents[2] / "shared" / "scenes" / "fern"
needs_fern = pytest.mark.skipif(not FERN.is_dir(), reason=f"fern capture not found at {FERN}")
