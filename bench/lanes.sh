#!/usr/bin/env bash
# bench/lanes.sh LANE QUEUE [WAIT_PID]: one lane of a long campaign on a shared machine.
#
# Pops lines "WORKTREE MODEL DATASET SEED..." off the QUEUE file (under flock, so several lanes share
# one queue and the queue can be edited while they run) and runs each as one resumable
# `bench grid --profile $PROFILE` from that WORKTREE (a clean `git worktree add --detach` of the
# commit to run, so every record names a clean revision).  Records go to $RESULTS, run states to
# $BENCH_STATE_DIR; output is appended to $LOGS/lane$LANE.log, one start/end line per job to
# $LOGS/lanes.log.  The job in flight is noted in $LOGS/lane$LANE.current: a lane stopped with its job
# (the machine or the session ended) resumes that job first when it is started again, and the run
# itself resumes from its saved state.  WAIT_PID: start only after that process has ended.
# Defaults: PROFILE=full, RESULTS=<this repo>/results, BENCH_STATE_DIR=<this repo>/.cache/runs,
# LOGS=<dir of QUEUE>, one torch thread per lane (OMP_NUM_THREADS=1): two lanes on 2 cores.
set -uo pipefail
lane=$1; queue=$2; wait_pid=${3:-}
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${PROFILE:=full}" "${RESULTS:=$repo/results}" "${LOGS:=$(dirname "$queue")}"
export BENCH_STATE_DIR="${BENCH_STATE_DIR:-$repo/.cache/runs}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
bench="$repo/.venv/bin/bench"
if [ -n "$wait_pid" ]; then while kill -0 "$wait_pid" 2>/dev/null; do sleep 15; done; fi
current="$LOGS/lane$lane.current"  # the job in flight; a lane killed mid-job (the session ended) resumes it first
while true; do
  if [ -s "$current" ]; then
    job=$(cat "$current"); how="resume"
  else  # pop the head line and note it as in flight, both under the lock
    job=$(flock "$queue.lock" bash -c 'head -n1 "$1" | tee "$2"; sed -i 1d "$1"' _ "$queue" "$current"); how="start"
  fi
  [ -z "$job" ] && { rm -f "$current"; break; }
  set -- $job; wt=$1; model=$2; dataset=$3; shift 3
  echo "$(date -u +%FT%TZ) lane$lane $how $wt $model $dataset $*" >> "$LOGS/lanes.log"
  (cd "$wt" && PYTHONPATH="$wt" "$bench" grid --profile "$PROFILE" --models "$model" --datasets "$dataset" \
     --seeds "$@" --device cpu --results-dir "$RESULTS" >> "$LOGS/lane$lane.log" 2>&1)
  rc=$?  # before anything else runs: $(date) below would reset it
  rm -f "$current"  # done, failed or dropped (SIGTERM to its bench grid): not resumed
  echo "$(date -u +%FT%TZ) lane$lane end rc=$rc $model $dataset $*" >> "$LOGS/lanes.log"
done
