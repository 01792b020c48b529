#!/usr/bin/env bash
# Create .venv if missing and install the pinned requirements and the suite (idempotent:
# reinstalls only when requirements.txt or setup.cfg changed). Sourced by run_all.sh.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python_bin="${BENCH_PYTHON:-python3.11}"
command -v "$python_bin" >/dev/null 2>&1 || python_bin=python3
if [ ! -x "$root/.venv/bin/python" ]; then
  "$python_bin" -m venv "$root/.venv"
fi
stamp="$root/.venv/.bench-installed"
want="$(cat "$root/requirements.txt" "$root/setup.cfg" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$root/.venv/bin/pip" install -q --disable-pip-version-check -r "$root/requirements.txt" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$root/.venv/bin/pip" install -q --disable-pip-version-check --no-build-isolation --no-deps -e "$root" 2>&1 \
    | grep -v "^WARNING: Location" || true
  "$root/.venv/bin/python" -c "import torch, recbole, bench" # fail here, not later, if the install broke
  echo "$want" > "$stamp"
fi
