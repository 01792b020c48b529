"""What ``./run_all.sh`` prints after rendering: the profile's runs without a record and what they would cost.

``python -m bench.plan --profile P [--results-dir …] [--reports-dir …] [--data-dir …]`` trains nothing and
writes nothing.  It lists, per model, the runs ``bench grid --profile P`` would start (datasets with data
only), with the hours ``bench.cost`` projects from the records and the saved timing passes
(``reports/speed/timing-<profile>-*.json``); the runs on datasets whose file is absent are counted apart,
since they cannot run at all.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import bench  # noqa: F401  (RecBole compatibility first)
from bench.errors import BenchError
from datasets.prepare import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_timings(reports_dir, profile: str) -> dict:
    """{dataset: {model: timing row}} of the saved CPU timing passes of ``profile`` (as ``bench cost`` reads them)."""
    out: dict = {}
    for path in sorted((Path(reports_dir) / "speed").glob(f"timing-{profile}-*.json")):
        blob = json.loads(path.read_text())
        if blob.get("device") == "cpu":
            out.setdefault(blob["dataset"], {}).update(blob["models"])
    return out


def missing_queue(profile: dict, results_dir, reports_dir, data_dir=None) -> tuple[list[dict], dict]:
    """(the runs without an ok record, in ``bench grid`` order, each {model, dataset, seed, hours, ...};
    {dataset without its file: number of grid runs on it})."""
    from bench.cost import cost_rows, queue_rows
    from bench.grid import available_datasets
    from bench.profiles import grid
    from datasets.prepare import load_sequences

    present, absent = available_datasets(profile, data_dir)
    cannot = {ds: len(grid(profile, datasets=[ds])) for ds in absent}
    n_users = {ds: load_sequences(ds, data_dir).n_users for ds in present}
    rows = cost_rows(profile, results_dir, cpu_timings(reports_dir, profile["name"]), present, n_users)
    return queue_rows(profile, results_dir, rows, data_dir), cannot


def summary(profile: dict, queue: list[dict], cannot: dict) -> str:
    """The lines ``./run_all.sh`` prints: totals, then one line per model (runs, hours), in queue order."""
    name = profile["name"]
    known = sum(q["hours"] or 0.0 for q in queue)
    unknown = sum(q["hours"] is None for q in queue)
    lines = [f"profile {name}: {len(queue)} runs without a record, projected {known:.1f} process-hours"
             + (f" ({unknown} without a projection)" if unknown else "")
             + f" (bench/cost.py; run by run: reports/speed/campaign-{name}.md after `bench cost --profile {name}`)"]
    per_model: dict = {}
    for q in queue:
        runs, hours = per_model.get(q["model"], (0, 0.0))
        per_model[q["model"]] = (runs + 1, hours + (q["hours"] or 0.0))
    for model, (runs, hours) in per_model.items():
        lines.append(f"  {model:28s} {runs:3d} run(s) {hours:7.1f} h")
    for ds, n in sorted(cannot.items()):
        lines.append(f"  ({n} runs on {ds} cannot run: its data file is absent)")
    if queue:
        lines.append(f"to train them (resumable; interrupt at any time): ./run_all.sh --train --profile {name}")
    return "\n".join(lines)


def main(argv=None) -> int:
    from bench.profiles import DEFAULT_PROFILE, load_profile

    parser = argparse.ArgumentParser(prog="python -m bench.plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help=f"profile name or YAML (default {DEFAULT_PROFILE})")
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "results"))
    parser.add_argument("--reports-dir", default=str(REPO_ROOT / "reports"))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
        queue, cannot = missing_queue(profile, args.results_dir, args.reports_dir, args.data_dir)
    except (BenchError, DataError) as err:
        print(f"bench.plan: error: {err}", file=sys.stderr)
        return 2
    print(summary(profile, queue, cannot))
    return 0


if __name__ == "__main__":
    sys.exit(main())
