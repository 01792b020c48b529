#!/usr/bin/env bash
# ./run_all.sh [--profile P] [grid options...]   render the committed records, run the profile's missing runs
#                                                (resuming unfinished ones), render again (default profile: full)
# ./run_all.sh --report-only [--profile P]       only render from the committed records (no training)
# ./run_all.sh --tests [pytest options...]       the test suite (what CI runs)
# Both set up .venv first (created if missing, pinned requirements, idempotent).
set -euo pipefail
cd "$(dirname "$0")"
# this checkout's code first, also where .venv is a link to a venv installed (editable) from another checkout
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
bash bench/setup_env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
if [ "${1:-}" = "--tests" ]; then
  shift
  exec .venv/bin/python -m pytest "$@"
fi
profile=full
report_only=0
args=()         # everything goes to `bench grid`
report_args=()  # the store locations go to `bench report` too
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="$2"; shift 2 ;;
    --report-only) report_only=1; shift ;;
    --results-dir|--reports-dir|--data-dir) args+=("$1" "$2"); report_args+=("$1" "$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
# Render first: a fresh clone shows the committed records' reports in seconds, before hours of training;
# then train what is missing (resuming unfinished runs) and render again if anything ran.
.venv/bin/bench report --profile "$profile" ${report_args[@]+"${report_args[@]}"}
[ "$report_only" = 1 ] && exit 0
status=0
.venv/bin/bench grid --profile "$profile" ${args[@]+"${args[@]}"} || status=$?
.venv/bin/bench report --profile "$profile" ${report_args[@]+"${report_args[@]}"}
exit $status
