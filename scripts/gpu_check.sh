#!/usr/bin/env bash
# Every GPU check of the project in one call on a lent GPU machine (the device tool gives
# a session 15 minutes of device time, its start included). Here, first:
#     ./scripts/gpu_pack.sh
# then, with the device tool:
#     run(command="./scripts/gpu_check.sh", carry=[".whl", ".carry"], timeout_s=580)
# Steps, each with a time limit, all inside GPU_CHECK_SECONDS (default 540):
# 1. install the carried wheels, restore fern's PNGs, import every engine module;
# 2. train fern images_4 at 320^3 on the GPU (a short schedule: TRAIN_STEPS colour steps,
#    DISTILL_STEPS feature steps), the checkpoint the fern_320 case needs;
# 3. scripts/bench_segment.py --device cuda: growth_rounds (a growth round's fixed cost),
#    fern_320 (stroke latency, GPU peak memory) and mesh_256;
# 4. the CUDA tests (pytest -m cuda) in the time left.
# Writes to $OUT (what the device tool brings back; ./gpu_out elsewhere): summary.txt,
# one log per step, segment_cuda.{json,md} (scripts/bench_segment.py's results).
# A dry run of the script itself on a CPU, with this checkout's .venv (its results go to
# ./gpu_out, not bench_results/):
#     DEVICE=cpu PYTHON=.venv/bin/python TRAIN_STEPS=20 DISTILL_STEPS=20 TRAIN_SECONDS=1200 \
#     GPU_CHECK_SECONDS=1800 EXTRA_TRAIN_ARGS="--set train.batch_rays=1024" ./scripts/gpu_check.sh
set -u
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
mkdir -p "$out"
deadline=$((SECONDS + ${GPU_CHECK_SECONDS:-540}))
TRAIN_STEPS=${TRAIN_STEPS:-1500}
DISTILL_STEPS=${DISTILL_STEPS:-800}
TRAIN_SECONDS=${TRAIN_SECONDS:-300}
EXTRA_TRAIN_ARGS=${EXTRA_TRAIN_ARGS:-}   # more --set options (a dry run's smaller batches)
DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TQDM_MININTERVAL=5   # progress lines every 5 s in the logs

note() { echo "[$SECONDS s] $*" | tee -a "$out/summary.txt"; }
# step NAME SECONDS COMMAND...: runs COMMAND for at most SECONDS (and never past the
# deadline), its output in $out/NAME.log.
step() {
    local name=$1 limit=$2 left=$((deadline - SECONDS))
    shift 2
    ((limit > left)) && limit=$left
    if ((limit < 10)); then note "$name: skipped, no time left"; return 1; fi
    note "$name: start (at most $limit s)"
    timeout "$limit" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    note "$name: exit $rc$( ((rc == 124)) && echo ' (time limit)')"
    return $rc
}

command -v nvidia-smi > /dev/null &&
    note "$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
if [ "$DEVICE" = cuda ]; then   # the GPU machine's Python lacks these packages
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl > "$out/setup.log" 2>&1 || { note "wheels: failed (setup.log)"; exit 1; }
fi
export PYTHONPATH="$PWD:/tmp/site" DEVICE
step setup_check 120 "$PYTHON" - <<'EOF' || exit 1
import importlib, os, pkgutil, sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = "missing (growth falls back to PyTorch's operations)"
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, numpy {np.__version__}, "
      f"cuda {torch.cuda.is_available()}, triton {triton_version}")
assert os.environ["DEVICE"] != "cuda" or torch.cuda.is_available(), "torch sees no CUDA device"
import engine
for module in pkgutil.walk_packages(engine.__path__, "engine."):
    importlib.import_module(module.name)         # a missing dependency fails here, not later
target = Path("/tmp/fern/images_4")
target.mkdir(parents=True, exist_ok=True)
(target.parent / "poses_bounds.npy").write_bytes(Path(".carry/fern/poses_bounds.npy").read_bytes())
for packed in sorted(Path(".carry/fern/images_4").glob("*.webp")):
    Image.open(packed).save(target / f"{packed.stem}.png")
print(f"fern: {len(list(target.glob('*.png')))} images restored")
EOF
cat "$out/setup_check.log" >> "$out/summary.txt"

# shellcheck disable=SC2086  # EXTRA_TRAIN_ARGS: one word per argument
step train "$TRAIN_SECONDS" "$PYTHON" -m engine.cli train --config configs/fern_gpu.toml --device "$DEVICE" \
    --set data.path='"/tmp/fern"' --set field.num_voxels=32768000 \
    --set train.steps="$TRAIN_STEPS" --set 'field.upscale_steps=[200,400,600,800]' \
    --set train.eval_every=0 --set distill.steps="$DISTILL_STEPS" \
    --set train.out_dir='"runs/fern_320"' --set features.cache_dir='"runs/fern_320/features"' \
    $EXTRA_TRAIN_ARGS
tr '\r' '\n' < "$out/train.log" | grep -v '^ *$' | tail -n 4 >> "$out/summary.txt"   # tqdm: \r lines

step bench 150 "$PYTHON" scripts/bench_segment.py --device "$DEVICE" --case growth_rounds \
    --case fern_320 --case mesh_256 --results "$out"

step cuda_tests 600 "$PYTHON" -m pytest -m cuda -q -p no:cacheprovider tests
tail -n 3 "$out/cuda_tests.log" >> "$out/summary.txt"
note "done"
