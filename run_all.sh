#!/usr/bin/env bash
# ./run_all.sh [--profile P] [grid options...]   run the profile's missing runs (resuming unfinished ones),
#                                                then render every table and figure (default profile: full)
# ./run_all.sh --report-only [--profile P]       only render from the committed records (no training)
# ./run_all.sh --tests [pytest options...]       the test suite (what CI runs)
# Both set up .venv first (created if missing, pinned requirements, idempotent).
set -euo pipefail
cd "$(dirname "$0")"
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
status=0
if [ "$report_only" = 0 ]; then
  .venv/bin/bench grid --profile "$profile" ${args[@]+"${args[@]}"} || status=$?
fi
.venv/bin/bench report --profile "$profile" ${report_args[@]+"${report_args[@]}"}
exit $status
