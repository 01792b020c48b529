#!/usr/bin/env bash
# bench/gpu_collect.sh FILES_AT: bring a device call's output into the repository.
# From gpu_session.sh (paper-results.tgz): unpacks the paper records into results/ (new runs only;
# committed records are never overwritten), copies the GPU check and the device timings into
# reports/speed, and renders and audits the paper profile (integrity; the determinism re-runs
# were made on the device).
# From gpu_sweep.sh (full-results-<i>.tgz): bench.gpu_sweep collect puts the new runs into
# results/full when the equivalence gate passed, else into .cache/gpu-unverified (git-ignored, in
# no table), with the gate's verdict in reports/full/gpu-gate.md; then renders and audits full.
# Then review and commit results/<profile>, reports/<profile> and reports/speed.
set -euo pipefail
src=$(cd "${1:?usage: bench/gpu_collect.sh FILES_AT (the files_at folder of the device call)}" && pwd)
cd "$(dirname "$0")/.."
bench=.venv/bin/bench
dirs=(--results-dir "$PWD/results" --reports-dir "$PWD/reports")
if compgen -G "$src/full-results-*.tgz" > /dev/null; then
  grep -E "rc=|not started|sweep done|records" "$src/summary.txt" 2>/dev/null || true
  # exit 1: the gate did not pass; the runs are in .cache/gpu-unverified and nothing is rendered
  .venv/bin/python -m bench.gpu_sweep collect --src "$src" --results results --reports reports \
    --quarantine .cache/gpu-unverified
  "$bench" report --profile full "${dirs[@]}" && "$bench" check --profile full --skip-determinism "${dirs[@]}" | head -3
  exit 0
fi
[ -f "$src/paper-results.tgz" ] && tar -xzkf "$src/paper-results.tgz" -C results 2>/dev/null || true  # -k: keep existing
cp "$src"/gpu-*.md "$src"/gpu-*.json reports/speed/ 2>/dev/null || true
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tar -xzf "$src/logs.tgz" -C "$tmp" 2>/dev/null || true
cp "$tmp"/cost/speed/timing-*-cuda.json reports/speed/ 2>/dev/null || true
[ -f "$tmp/check/paper/audit.md" ] && cp "$tmp/check/paper/audit.md" "reports/speed/gpu-determinism-$(date -u +%F).md"
grep -E "rc=|session done" "$src/summary.txt" 2>/dev/null || true
"$bench" report --profile paper "${dirs[@]}" && "$bench" check --profile paper --skip-determinism "${dirs[@]}" | head -3
