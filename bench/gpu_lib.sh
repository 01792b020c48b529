# Shared by bench/gpu_session.sh and bench/gpu_sweep.sh (sourced, never run): the lent machine's
# Python set-up and the deadline-bound pool of `bench` jobs.  Both scripts are one device call each,
# so whatever they share must behave the same on a bare machine with no network.
#
# gpu_init sets: py, dev (GPU_CHECK_DEVICE, default cuda), out ($OUT), work (GPU_WORK), t0,
# deadline (DEADLINE s from now), pool (POOL), min_left (MIN_LEFT: s a job needs to be worth starting).
# Jobs are lines "name:bench.cli arguments"; gpu_pool runs them, logs to $work/logs/<name>.log and
# one line per job to $work/logs/jobs.log.

gpu_init() {  # default DEADLINE, default MIN_LEFT
  py="${PYTHON:-python3}"; dev="${GPU_CHECK_DEVICE:-cuda}"; out="${OUT:-/tmp/gpu-session-out}"
  t0=$SECONDS; deadline=$((SECONDS + ${DEADLINE:-$1})); pool="${POOL:-12}"; min_left="${MIN_LEFT:-$2}"
  work="${GPU_WORK:-/tmp/bench-gpu}"; local site=/tmp/bench-gpu-site
  mkdir -p "$out" "$work/logs"
  # the GPU image has torch but not RecBole and its pure-Python needs: gpu_prepare.sh brought wheels
  "$py" -c "import glob, zipfile; [zipfile.ZipFile(w).extractall('$site') for w in glob.glob('.cache/gpu/wheels/*.whl')]"
  export PYTHONPATH="$PWD:$site" PYTHONUNBUFFERED=1
  [ -d .cache/gpu/data ] && export BENCH_DATA_DIR="$PWD/.cache/gpu/data"
  export BENCH_CACHE_DIR="$work/cache" BENCH_STATE_DIR="$work/states"
  # The device copy carries .git at the commit the session started from, so records name that
  # commit and store the diff to the tree that ran (code.diff.gz), as for any uncommitted change.
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null
    "$py" -c "import torch, recbole; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'recbole', recbole.__version__)"
    nproc; } 2>&1 | tee "$out/summary.txt"
}

gpu_left() { echo $((deadline - SECONDS)); }

gpu_run_job() {  # name, bench.cli args...: one pool job, interrupted (SIGINT, then KILL) at the deadline
  local name=$1 t=$SECONDS threads=1; shift
  # a job named *-cpu is the CPU side of a comparison: give it the threads the GPU jobs leave
  [[ $name == *-cpu ]] && threads=4
  OMP_NUM_THREADS=$threads timeout -k 15 -s INT "$(gpu_left)" "$py" -m bench.cli "$@" > "$work/logs/$name.log" 2>&1
  echo "$name rc=$? $((SECONDS - t)) s, started at $((t - t0)) s" >> "$work/logs/jobs.log"
}

gpu_pool() {  # jobs text: at most POOL at once, in order; none started with under MIN_LEFT s left
  # Counts every background job of the caller (its packer, a gate) as a slot: they share the device.
  local job
  while read -r job; do  # (leading blanks dropped)
    [ -z "$job" ] && continue
    while [ "$(jobs -rp | wc -l)" -gt "$pool" ]; do wait -n; done
    if [ "$(gpu_left)" -lt "$min_left" ]; then echo "${job%%:*} not started (deadline)" >> "$work/logs/jobs.log"; continue; fi
    gpu_run_job "${job%%:*}" ${job#*:} &
  done <<< "$1"
}

gpu_wait_all_but() {  # n: wait until only n background jobs (the packer) still run
  while [ "$(jobs -rp | wc -l)" -gt "$1" ]; do wait -n; done
}

gpu_start_packer() {  # command, seconds: run it every so often in the background; sets $packer
  # The sleep is killed with the loop: left behind it would hold the caller's stdout open (a
  # captured call would then wait for it to end).
  ( trap 'kill $s 2>/dev/null; exit 0' TERM
    while :; do sleep "$2" & s=$!; wait $s; $1 > /dev/null 2>&1; done ) &
  packer=$!
}

gpu_stop_packer() { kill "$packer" 2>/dev/null; wait "$packer" 2>/dev/null; }
