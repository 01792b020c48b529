#!/usr/bin/env bash
# The GPU check (README "Running on a GPU"), for a lent GPU machine: Python 3.12 with its own
# CUDA build of torch, pandas, scipy, matplotlib and seaborn, but no RecBole and no network.
# Here, first: `bash bench/gpu_prepare.sh` (wheels + data into .cache/gpu, git-ignored); then
# run this from the repository root there, carrying .cache/gpu.  Sized for < 10 min on one H100:
#   1. the smoke grid (seed 0, 3 datasets x 10 models) on CUDA and on that machine's CPU,
#      compared run by run (metrics and users whose rank changed);
#   2. one epoch and one full validation of SASRec and DiffuRec on full Beauty at the paper
#      profile's settings, on CUDA;
# and writes gpu-<device>.md/.json into $OUT (else reports/speed).
# GPU_CHECK_DEVICE=cpu runs the same steps without CUDA (a dry run of this script);
# GPU_CHECK_SPEED_ARGS="--max-users 500 --max-batches 3" shrinks step 2 for such a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
dev="${GPU_CHECK_DEVICE:-cuda}"
out="${OUT:-reports/speed}"
site=/tmp/bench-gpu-site
# pure-Python wheels: unpacked, not installed (no pip index there, nothing written to the image)
"$py" -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('$site') for w in glob.glob('.cache/gpu/wheels/*.whl')]"
export PYTHONPATH="$PWD:$site" BENCH_DATA_DIR="$PWD/.cache/gpu/data"
export BENCH_CACHE_DIR=/tmp/bench-gpu-cache BENCH_STATE_DIR=/tmp/bench-gpu-states
work=$(mktemp -d /tmp/bench-gpu-XXXX)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
"$py" -c "import torch, recbole; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'recbole', recbole.__version__)"
t0=$SECONDS
"$py" -m bench.cli grid --profile smoke --seeds 0 --device "$dev" --results-dir "$work/dev"
echo "smoke on $dev: $((SECONDS - t0)) s"; t0=$SECONDS
"$py" -m bench.cli grid --profile smoke --seeds 0 --device cpu --results-dir "$work/cpu"
echo "smoke on cpu: $((SECONDS - t0)) s"; t0=$SECONDS
"$py" -m bench.cli speed --dataset beauty --models SASRec DiffuRec --profile paper --skip-recbole \
  --device "$dev" --reports-dir "$work/speed" ${GPU_CHECK_SPEED_ARGS:-}
echo "timings: $((SECONDS - t0)) s"
"$py" -m bench.gpu_report --cpu "$work/cpu/smoke" --device-store "$work/dev/smoke" \
  --speed "$work/speed/speed" --out "$out"
