"""Real captures the tests may read from ../shared (beside the checkout, in CI too)."""

import pytest

from locations import SHARED

FERN = SHARED / "scenes" / "fern"
needs_fern = pytest.mark.skipif(not FERN.is_dir(), reason=f"fern capture not found at {FERN}")
