#!/usr/bin/env bash
# ./run_all.sh [--profile P]                     render the committed records of P, then print the runs still
#                                                missing and their projected hours; trains nothing
# ./run_all.sh --train [--profile P] [grid options...]
#                                                the same, then run (or resume) the missing runs, render again
# ./run_all.sh --profile quick|smoke             a profile whose YAML says `cheap: true` trains without --train
# ./run_all.sh --report-only [--profile P]       only render (no missing-runs summary)
# ./run_all.sh --dry-run ...                     print the commands the call would run; run nothing
# ./run_all.sh --tests [pytest options...]       the test suite (what CI runs)
# P defaults to DEFAULT_PROFILE in bench/profiles.py (full), the `bench` commands' default too.
# Every form sets up .venv first (created if missing, pinned requirements, idempotent).
set -euo pipefail
cd "$(dirname "$0")"
# this checkout's code first, also where .venv is a link to a venv installed (editable) from another checkout
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ "${1:-}" = "--tests" ]; then
  bash bench/setup_env.sh
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
  shift
  exec .venv/bin/python -m pytest "$@"
fi
# the one default, read from where the CLI reads it
profile="$(sed -n 's/^DEFAULT_PROFILE = "\(.*\)"$/\1/p' bench/profiles.py)"
[ -n "$profile" ] || { echo "run_all.sh: no DEFAULT_PROFILE line in bench/profiles.py" >&2; exit 2; }
report_only=0
train=0
dry=0
args=()         # everything else goes to `bench grid`
store_args=()   # the store locations go to `bench report` and the missing-runs summary too
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) [ $# -ge 2 ] || { echo "run_all.sh: --profile needs a name" >&2; exit 2; }
               profile="$2"; shift 2 ;;
    --report-only) report_only=1; shift ;;
    --train) train=1; shift ;;
    --dry-run) dry=1; shift ;;
    --results-dir|--reports-dir|--data-dir) args+=("$1" "$2"); store_args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

run() {  # run a command, or with --dry-run only print it
  if [ "$dry" = 1 ]; then printf '%s\n' "$*"; else "$@"; fi
}

run bash bench/setup_env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
case "$profile" in
  *.yaml|*.yml) profile_file="$profile" ;;
  *) profile_file="bench/profiles/$profile.yaml" ;;
esac
# `cheap: true` in the profile's own YAML (quick, smoke) means training it is the expected thing to do
cheap="$(.venv/bin/python -c 'import sys, yaml, pathlib; p = pathlib.Path(sys.argv[1])
print(str(p.exists() and (yaml.safe_load(p.read_text()) or {}).get("cheap") is True).lower())' "$profile_file")"
[ "$cheap" = true ] && train=1

# Render first: a fresh clone shows the committed records' reports in minutes, before any training.
run .venv/bin/bench report --profile "$profile" ${store_args[@]+"${store_args[@]}"}
[ "$report_only" = 1 ] && exit 0
if [ "$train" = 0 ]; then
  run .venv/bin/python -m bench.plan --profile "$profile" ${store_args[@]+"${store_args[@]}"}
  if [ "${#args[@]}" -gt "${#store_args[@]}" ]; then
    echo "run_all.sh: grid options given without --train: nothing was trained" >&2
  fi
  exit 0
fi
status=0
run .venv/bin/bench grid --profile "$profile" ${args[@]+"${args[@]}"} || status=$?
run .venv/bin/bench report --profile "$profile" ${store_args[@]+"${store_args[@]}"}
exit $status
