#!/usr/bin/env bash
# The `full` profile's missing runs on a lent GPU, inside DEADLINE seconds (default 480), packed into
# $OUT in parts a device call can bring back (docs/gpu.md, "GPU sweep of the full profile").
#
# Here, first: `bash bench/gpu_prepare.sh` (wheels and data into .cache/gpu, git-ignored);
# there, from the repository root with .cache/gpu carried: `bash bench/gpu_sweep.sh`.
#   1. the equivalence gate, started first: the committed CPU record GATE_RECORD (SASRec, Beauty,
#      seed 0) rerun on the device at its own settings and judged by `bench reproduce`'s rule
#      (bench.gpu_sweep gate: identical or equivalent passes).  It runs beside the sweep, not
#      before it, because one small training leaves the GPU mostly idle; the verdict decides at
#      collect time whether the sweep's records may enter the tables.  GATE_FIRST=1 waits for it.
#   2. a pool of at most POOL jobs (the gate is one of them), one `bench grid` per run of
#      `bench grid --profile full --list` (runs without a committed record, full.yaml's priority
#      order; SWEEP_ARGS narrows it, e.g. "--datasets beauty toys"); no job starts with under
#      MIN_LEFT s left, since a run stopped at the deadline is lost (the machine is bare next time).
#   3. at DEADLINE what still runs is stopped, and the gate's files, every finished record (record.json,
#      ranks.npz, code.diff.gz) and the logs are packed into at most PACK_PARTS self-contained
#      full-results-<i>.tgz of at most PACK_PART_BYTES each (bench.gpu_sweep pack), beside summary.txt.
#      The pack is also refreshed every 30 s, so a call cut short still returns what finished.
# The records name the device (env.device: the GPU's name), as every record does.
# Dry run on a CPU machine (tests/test_gpu_sweep.py): GPU_CHECK_DEVICE=cpu, a small DEADLINE, and
# SWEEP_PROFILE=<tiny profile YAML> with GATE_RECORD=<a record of it>, or JOBS=… ("name:bench.cli args" lines).
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_lib.sh
gpu_init 480 120  # DEADLINE, MIN_LEFT: a full Beauty run takes minutes on a shared GPU
profile="${SWEEP_PROFILE:-full}"; name=$(basename "$profile" .yaml)
gate_record="${GATE_RECORD:-results/$name/beauty/SASRec/seed-0}"
results="$work/results"; gate_dir="$work/gate"

if [ -z "${JOBS:-}" ]; then
  # shellcheck disable=SC2086  # SWEEP_ARGS is a list of options
  JOBS=$("$py" -m bench.cli grid --profile "$profile" --list ${SWEEP_ARGS:-} | while read -r m d s; do
    echo "$name-$m-$d-$s:grid --profile $profile --models $m --datasets $d --seeds $s --device $dev --results-dir $results"
  done)
fi
echo "$(echo "$JOBS" | grep -c .) $name runs to try, in this order:" >> "$work/logs/jobs.log"
echo "$JOBS" | cut -d: -f1 | head -40 >> "$work/logs/jobs.log"

pack() {  # the gate, finished records and logs into $OUT (each part replaced atomically)
  "$py" -m bench.gpu_sweep pack --store "$results/$name" --out "$out" \
    --first "$gate_dir/gate.json" "$gate_dir/gate.md" --last "$work"/logs/*.log
}
gpu_start_packer pack 30

run_gate() {
  local t=$SECONDS
  # shellcheck disable=SC2046  # no --profile when GATE_PROFILE is unset: the record's own
  timeout -k 15 -s INT "$(gpu_left)" "$py" -m bench.gpu_sweep gate --record "$gate_record" --device "$dev" \
    --out "$gate_dir" $([ -n "${GATE_PROFILE:-}" ] && echo --profile "$GATE_PROFILE") > "$work/logs/gate.log" 2>&1
  echo "gate rc=$? $((SECONDS - t)) s, started at $((t - t0)) s" >> "$work/logs/jobs.log"
}
if [ "$(gpu_left)" -lt "$min_left" ]; then
  echo "gate not started (deadline)" >> "$work/logs/jobs.log"
elif [ "${GATE_FIRST:-0}" = 1 ]; then
  run_gate
else
  run_gate &
fi
gpu_pool "$JOBS"
gpu_wait_all_but 1  # the packer
gpu_stop_packer

cat "$work/logs/jobs.log" >> "$out/summary.txt"
tail -1 "$work/logs/gate.log" 2>/dev/null | tee -a "$out/summary.txt"
grep -h "^ok \|^FAILED" "$work"/logs/"$name"-*.log 2>/dev/null | tail -60 >> "$out/summary.txt"
pack 2>&1 | tee -a "$out/summary.txt"  # and the devices the records name
echo "sweep done at $((SECONDS - t0)) s" | tee -a "$out/summary.txt"
