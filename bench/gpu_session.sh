#!/usr/bin/env bash
# One lent GPU session in one command: the GPU check, then slices of the paper profile, all
# inside DEADLINE seconds (default 470), packed into $OUT (docs/gpu.md).
#
# Here, first: `bash bench/gpu_prepare.sh` (wheels and data into .cache/gpu, git-ignored);
# there, from the repository root with .cache/gpu carried: `bash bench/gpu_session.sh`.
#   1. versions and `bench speed` of SASRec and DiffuRec on full Beauty at the paper profile's
#      settings, alone on the device (one epoch and one full validation each);
#   2. a pool of at most POOL jobs, in the priority order of JOBS: the determinism re-runs on the
#      device (`bench check --profile paper`), the smoke grid on the device and on the CPU (the
#      GPU check's comparison), the `full` profile's timing pass on the device for the cost
#      table's GPU column (`bench cost --timing-batches 20`: cost/speed/timing-full-*-cuda.json
#      in logs.tgz, timed while other jobs share the GPU), then one `bench grid --profile paper`
#      per (model, dataset, seed) without a committed record (`bench grid --list`, paper.yaml's priority);
#   3. at DEADLINE every job still running is stopped (its run is lost: the machine is bare next
#      time), and what finished is packed: $OUT/paper-results.tgz (records), gpu-<device>.md/.json
#      (the check), logs.tgz, summary.txt.  Records and logs are also packed every 20 s, so a
#      call cut short by the device time still returns every run that finished.
# Many small trainings share the GPU well: each is bound by its own Python launch overhead.
# GPU_CHECK_DEVICE=cpu, DEADLINE=… and JOBS=… make a dry run of this script on a CPU machine
# (tests/test_gpu_session.py).
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_lib.sh
gpu_init 470 45  # DEADLINE, MIN_LEFT (s a job needs)

timeout 120 "$py" -m bench.cli speed --dataset beauty --models SASRec DiffuRec --profile paper --skip-recbole \
  --device "$dev" --reports-dir "$work/speed" ${GPU_SPEED_ARGS:-} > "$work/logs/speed.log" 2>&1
echo "speed (alone on $dev): rc=$? $((SECONDS - t0)) s" | tee -a "$out/summary.txt"

# The paper runs still missing from the committed records, in the profile's `priority:` order
# (`bench grid --list`; paper.yaml says what a reviewer needs first: all five seeds of DiffuRec and
# SASRec on Beauty, Table 2's Beauty column, the controls and the SASRec tuning grid, Toys);
# GPU_DATASETS: ML-1M at its full length is left out by default (an epoch there is 116 M history
# tokens, Beauty's 1.1 M).  The committed records are copied into the work store, so the grid
# skips them.
if [ -z "${JOBS:-}" ]; then
  mkdir -p "$work/results" && cp -r results/paper "$work/results/" 2>/dev/null
  paper_jobs=$("$py" -m bench.cli grid --profile paper --list --datasets ${GPU_DATASETS:-beauty toys} \
    | while read -r m d s; do echo "paper-$m-$d-$s:grid --profile paper --models $m --datasets $d --seeds $s --device $dev --results-dir $work/results"; done)
  default_jobs="check:check --profile paper --device $dev --results-dir $work/check --reports-dir $work/check
  smoke-dev:grid --profile smoke --seeds 0 --device $dev --results-dir $work/smoke-dev
  smoke-cpu:grid --profile smoke --seeds 0 --device cpu --results-dir $work/smoke-cpu --state-dir $work/states-cpu
  cost-beauty:cost --profile full --dataset beauty --timing-batches 20 --device $dev --reports-dir $work/cost
  cost-toys:cost --profile full --dataset toys --timing-batches 20 --device $dev --reports-dir $work/cost
  cost-ml-1m:cost --profile full --dataset ml-1m --timing-batches 20 --device $dev --reports-dir $work/cost
  $paper_jobs"
  echo "$(echo "$paper_jobs" | grep -c .) paper runs missing, in this order:" >> "$work/logs/jobs.log"
  echo "$paper_jobs" | cut -d: -f1 | head -40 >> "$work/logs/jobs.log"
fi

pack() {  # what has finished so far into $OUT, atomically: a call cut short still returns it
  # only finished runs: a run stopped at the deadline leaves its folder with just its lock (bench/resume.py)
  if [ -n "$(find "$work/results/paper" -name record.json 2>/dev/null | head -1)" ]; then
    tar -C "$work/results" --exclude='.lock' -czf "$out/.paper.tgz" paper && mv "$out/.paper.tgz" "$out/paper-results.tgz"
  fi
  tar -C "$work" -czf "$out/.logs.tgz" logs speed check cost 2>/dev/null; mv "$out/.logs.tgz" "$out/logs.tgz"
}
gpu_start_packer pack 20
gpu_pool "${JOBS:-$default_jobs}"
gpu_wait_all_but 1  # the packer
gpu_stop_packer
cat "$work/logs/jobs.log" | tee -a "$out/summary.txt"

"$py" -m bench.gpu_report --cpu "$work/smoke-cpu/smoke" --device-store "$work/smoke-dev/smoke" \
  --speed "$work/speed/speed" --out "$out" 2>&1 | tail -3 | tee -a "$out/summary.txt"
grep -h "^ok \|^FAILED\|Error\|error" "$work"/logs/paper-*.log "$work/logs/check.log" 2>/dev/null | tail -60 >> "$out/summary.txt"
pack
echo "session done at $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
