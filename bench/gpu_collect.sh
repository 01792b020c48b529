#!/usr/bin/env bash
# bench/gpu_collect.sh FILES_AT: bring a gpu_session.sh call's output into the repository.
# Unpacks the paper records into results/ (new runs only; committed records are never
# overwritten), copies the GPU check and the device timings into reports/speed, and renders
# and audits the paper profile (integrity; the determinism re-runs were made on the device).
# Then review and commit results/paper, reports/paper and reports/speed.
set -euo pipefail
src=$(cd "${1:?usage: bench/gpu_collect.sh FILES_AT (the files_at folder of the device call)}" && pwd)
cd "$(dirname "$0")/.."
bench=.venv/bin/bench
[ -f "$src/paper-results.tgz" ] && tar -xzkf "$src/paper-results.tgz" -C results 2>/dev/null || true  # -k: keep existing
cp "$src"/gpu-*.md "$src"/gpu-*.json reports/speed/ 2>/dev/null || true
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
tar -xzf "$src/logs.tgz" -C "$tmp" 2>/dev/null || true
cp "$tmp"/cost/speed/timing-*-cuda.json reports/speed/ 2>/dev/null || true
[ -f "$tmp/check/paper/audit.md" ] && cp "$tmp/check/paper/audit.md" "reports/speed/gpu-determinism-$(date -u +%F).md"
grep -E "rc=|session done" "$src/summary.txt" 2>/dev/null || true
dirs=(--results-dir "$PWD/results" --reports-dir "$PWD/reports")
"$bench" report --profile paper "${dirs[@]}" && "$bench" check --profile paper --skip-determinism "${dirs[@]}" | head -3
