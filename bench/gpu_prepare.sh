#!/usr/bin/env bash
# Prepare .cache/gpu (git-ignored) for bench/gpu_session.sh and bench/gpu_sweep.sh on a GPU machine without network:
# RecBole 1.2.1 and the pure-Python packages it imports that the GPU image lacks, as wheels,
# and the released data files.  Carry .cache/gpu with the device run.
set -euo pipefail
cd "$(dirname "$0")/.."
data="${BENCH_DATA_DIR:-../shared/data/diffurec}"
mkdir -p .cache/gpu/wheels .cache/gpu/data
.venv/bin/pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .cache/gpu/wheels \
  recbole==1.2.1 colorlog==4.7.2 texttable==1.7.2 thop==0.1.1.post2209072238 2>&1 | grep -v "^WARNING: Location" || true
cp "$data"/*.pkl .cache/gpu/data/
du -sh .cache/gpu
