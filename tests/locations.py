"""Where the tests find the checkout and the shared data beside it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"  # beside the checkout, in CI too (may be absent)
