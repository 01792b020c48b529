"""The ``bench`` command line.  Every failure a user can cause ends in one line."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bench  # noqa: F401  (RecBole compatibility first)
from bench.errors import BenchError
from datasets.prepare import DataError

REPO_ROOT = Path(__file__).resolve().parent.parent


def _common(parser, profile=True):
    parser.add_argument("--results-dir", default=str(REPO_ROOT / "results"), help="results store (default results/)")
    parser.add_argument("--reports-dir", default=str(REPO_ROOT / "reports"), help="rendered reports (default reports/)")
    parser.add_argument("--data-dir", default=None, help="data folder (else $BENCH_DATA_DIR, else ../shared/data/diffurec)")
    if profile:
        from bench.profiles import DEFAULT_PROFILE

        parser.add_argument("--profile", default=DEFAULT_PROFILE,
                            help=f"profile name or YAML path (default {DEFAULT_PROFILE})")


def add_device_arg(parser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA when torch sees it, else the CPU), cpu, cuda or cuda:N")


def _training_args(parser) -> None:
    add_device_arg(parser)
    parser.add_argument("--state-dir", default=None,
                        help="saved training states (else $BENCH_STATE_DIR, else .cache/runs)")
    parser.add_argument("--save-every", type=float, default=None, metavar="S",
                        help="save the training state at the end of the first epoch S seconds after the "
                             "last save (default 120)")


def cmd_data_stats(args) -> int:
    from datasets.prepare import card_names, stats_rows

    for row in stats_rows(card_names(), args.data_dir):
        if row["status"] != "ok":
            print(f"{row['dataset']:7s} {row['status']}")
            continue
        ours, paper = row["ours"], row["paper"]
        print(f"{row['dataset']:7s} {'':6s} sequences   items    actions  avg_len  sparsity")
        for label, vals in (("ours", ours), ("paper", paper)):
            print(f"{'':7s} {label:6s} {vals['sequences']:9,d} {vals['items']:7,d} {vals['actions']:10,d}"
                  f" {vals['avg_len']:8.2f} {vals['sparsity']:8.2f}%")
        if row["differs"]:
            print(f"{'':7s} DIFFERS from Table 1 in: {', '.join(row['differs'])}")
    return 0


def cmd_run(args) -> int:
    from bench.profiles import grid, load_profile
    from bench.runner import run_entry

    profile = load_profile(args.profile)
    entry = single_entry(profile, args.model, args.dataset, args.seed)

    def show_epoch(e):
        valid = "" if e["valid"] is None else f" valid NDCG@10 {e['valid']['NDCG@10']:.4f}"
        print(f"  epoch {e['epoch']:3d} loss {e['train_loss']:.4f} ({e['train_s']:.1f} s){valid}", flush=True)

    status, record = run_entry(entry, profile, args.results_dir, args.data_dir, args.force, progress=show_epoch,
                               device=args.device, state_dir=args.state_dir, save_every_s=args.save_every,
                               notify=lambda text: print(text, flush=True))
    _print_result(entry, status, record)
    return 0 if status not in ("failed", "busy") else 1


def single_entry(profile: dict, model: str, dataset: str, seed: int):
    """Any model (or a variant of the profile) on any dataset card, with the profile's budget."""
    from bench.profiles import Entry, _freeze, all_variants
    from bench.zoo import get_spec
    from datasets.prepare import load_card

    load_card(dataset)
    for var in all_variants(profile):
        if var["name"].lower() == model.lower():
            base = get_spec(var["model"]).name
            return Entry(dataset, var["name"], seed, base, _freeze(var.get("params", {})))
    spec = get_spec(model)
    return Entry(dataset, spec.name, seed, spec.name)


def _print_result(entry, status, record):
    if status == "busy":
        print(f"busy    {entry.dataset}/{entry.model}/seed-{entry.seed}: another process is training it")
        return
    if status == "failed":
        print(f"FAILED {entry.dataset}/{entry.model}/seed-{entry.seed}: {record['error']['type']}: "
              f"{record['error']['message']}")
        return
    m = record["metrics"]["test"]
    print(f"{status:7s} {entry.dataset}/{entry.model}/seed-{entry.seed}: HR@10 {m['HR@10']:.4f} "
          f"NDCG@10 {m['NDCG@10']:.4f} ({record['timing']['epochs_run']} epochs, "
          f"{record['timing']['s_per_epoch']:.1f} s/epoch)")


def cmd_grid(args) -> int:
    from bench.grid import missing_entries, run_grid

    if args.list:
        for e in missing_entries(args.profile, args.results_dir, args.data_dir, args.models, args.datasets, args.seeds):
            print(e.model, e.dataset, e.seed)
        return 0
    failed = run_grid(args.profile, args.results_dir, args.data_dir, args.models, args.datasets,
                      args.seeds, executor=args.executor, address=args.address, device=args.device,
                      state_dir=args.state_dir, save_every_s=args.save_every)
    return 1 if failed else 0


def cmd_report(args) -> int:
    from bench.grid import expected_entries
    from bench.profiles import load_profile
    from bench.report import render

    profile = load_profile(args.profile)
    t0 = time.perf_counter()
    expected = [(e.dataset, e.model, e.seed) for e in expected_entries(profile)]
    paths = render(args.results_dir, args.reports_dir, profile["name"], data_dir=args.data_dir, expected=expected,
                   controls=profile.get("controls"), fidelity=profile.get("fidelity"))
    print(f"rendered {len(paths)} files into {Path(args.reports_dir) / profile['name']} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_check(args) -> int:
    from bench.audit import audit, write_audit
    from bench.audit.render import console_summary

    result = audit(args.profile, args.results_dir, args.data_dir, run_determinism=not args.skip_determinism,
                   device=args.device)
    md, _ = write_audit(result, args.reports_dir)
    from bench.report.readme import update_readme

    update_readme(args.reports_dir, result["profile"])  # the README quotes the claim verdicts
    print(console_summary(result, md))
    return 0 if result["integrity"]["passed"] else 1


def cmd_reproduce(args) -> int:
    from bench.audit.reproduce import format_reproduce, reproduce
    from bench.audit.verdict import EXIT_CODES

    if args.all:
        return _reproduce_all(args)
    if not args.record_dir:
        raise BenchError("reproduce: give a record folder, or --all --profile P")
    res = reproduce(args.record_dir, args.results_dir, args.data_dir, args.profile, args.keep, device=args.device,
                    with_recorded_code=args.with_recorded_code)
    print(format_reproduce(res))
    return EXIT_CODES[res["verdict"]]


def _reproduce_all(args) -> int:
    from bench.audit.reproduce_all import reproduce_all
    from bench.audit.verdict import EXIT_CODES, VERDICTS

    if args.record_dir or args.with_recorded_code or args.keep:
        raise BenchError("reproduce --all takes no record folder, --with-recorded-code or --keep")
    from bench.profiles import DEFAULT_PROFILE

    out = reproduce_all(args.profile or DEFAULT_PROFILE, args.results_dir, args.reports_dir, args.data_dir, args.models,
                        args.datasets, args.seeds, args.sample, args.sample_seed, args.device, args.redo)
    counts = ", ".join(f"{sum(r['verdict'] == v for r in out['rows'])} {v}" for v in VERDICTS)
    print(f"{len(out['rows'])} records: {counts}; wrote {out['path']}")
    return EXIT_CODES[out["verdict"]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    stats = data_sub.add_parser("stats", help="Table 1: our statistics next to the paper's")
    stats.add_argument("--data-dir", default=None)
    stats.set_defaults(func=cmd_data_stats)

    run = sub.add_parser("run", help="train and evaluate one (model, dataset, seed)")
    _common(run)
    run.add_argument("--model", required=True)
    run.add_argument("--dataset", required=True)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--force", action="store_true", help="rerun even if an identical record exists")
    _training_args(run)
    run.set_defaults(func=cmd_run)

    grid = sub.add_parser("grid", help="every (model, dataset, seed) of a profile; resumes")
    _common(grid)
    grid.add_argument("--models", nargs="+")
    grid.add_argument("--datasets", nargs="+")
    grid.add_argument("--seeds", nargs="+", type=int)
    grid.add_argument("--executor", choices=["local", "ray"], default="local")
    grid.add_argument("--address", default=None, help="Ray cluster address (with --executor ray)")
    grid.add_argument("--list", action="store_true",
                      help="print the runs without an ok record (MODEL DATASET SEED, in the profile's priority order); train nothing")
    _training_args(grid)
    grid.set_defaults(func=cmd_grid)

    report = sub.add_parser("report", help="render tables and figures from the records")
    _common(report)
    report.set_defaults(func=cmd_report)

    check = sub.add_parser("check", help="audit a profile's results: integrity, determinism, protocol, claims, env")
    _common(check)
    check.add_argument("--skip-determinism", action="store_true", help="do not re-run the determinism set")
    check.add_argument("--device", default="cpu",
                       help="device of the determinism re-runs: cpu (default; where the records were made), "
                            "cuda, cuda:N or auto")
    check.set_defaults(func=cmd_check)

    reproduce = sub.add_parser(
        "reproduce", help="re-run records and compare: identical (exit 0), equivalent (3), different (1)",
        description="Re-run one record (or, with --all, many) into a temporary store and compare with the record: "
                    "identical (exit 0), equivalent = differs only as floating-point order on another environment "
                    "explains (exit 3), different (exit 1). The rule is in docs/operations.md, 'bench reproduce'.")
    _common(reproduce, profile=False)
    reproduce.add_argument("record_dir", nargs="?", help="a run folder (…/<profile>/<dataset>/<model>/seed-<S>), or "
                                                         "relative to --results-dir")
    reproduce.add_argument("--profile", default=None, help="profile name or YAML (default: the record's profile; "
                                                           "with --all: the default profile)")
    reproduce.add_argument("--keep", action="store_true", help="keep the temporary store of the rerun")
    reproduce.add_argument("--device", default="record",
                           help="record (default: the record's own kind, cpu or cuda), auto, cpu, cuda or cuda:N")
    reproduce.add_argument("--with-recorded-code", action="store_true",
                           help="rerun the record's own code: its git revision plus its stored code.diff.gz, "
                                "checked out into a temporary worktree")
    reproduce.add_argument("--all", action="store_true",
                           help="rerun the profile's records (resumes) and write <reports>/<profile>/reproduce.md")
    reproduce.add_argument("--models", nargs="+", help="with --all: only these models")
    reproduce.add_argument("--datasets", nargs="+", help="with --all: only these datasets")
    reproduce.add_argument("--seeds", nargs="+", type=int, help="with --all: only these seeds")
    reproduce.add_argument("--sample", type=int, default=None, metavar="N",
                           help="with --all: N records drawn at random (fixed --sample-seed)")
    reproduce.add_argument("--sample-seed", type=int, default=0, help="seed of --sample (default 0)")
    reproduce.add_argument("--redo", action="store_true", help="with --all: rerun records already reproduced")
    reproduce.set_defaults(func=cmd_reproduce)

    from bench.cost import add_cost_parser
    from bench.equivalence import add_equivalence_parser
    from bench.progress import add_progress_parser
    from bench.speed import add_speed_parser

    add_speed_parser(sub, _common)
    add_cost_parser(sub, _common)
    add_equivalence_parser(sub)
    add_progress_parser(sub, _common)
    return parser


class _PipeSafeStdout:
    """sys.stdout that survives a closed reader (``bench run ... | head -1``): once the pipe is
    gone, output is dropped and the run goes on (its record is what matters)."""

    def __init__(self, raw):
        self.raw = raw

    def _closed(self) -> None:
        import os

        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.raw.fileno())
        except (OSError, ValueError):
            pass

    def write(self, text):
        try:
            return self.raw.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self):
        try:
            self.raw.flush()
        except BrokenPipeError:
            self._closed()

    def __getattr__(self, name):
        return getattr(self.raw, name)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    original = sys.stdout
    try:
        return _main(args)
    finally:
        sys.stdout = original


def _main(args) -> int:
    if not isinstance(sys.stdout, _PipeSafeStdout) and hasattr(sys.stdout, "fileno"):
        try:
            sys.stdout.fileno()
            sys.stdout = _PipeSafeStdout(sys.stdout)
        except (OSError, ValueError, AttributeError):
            pass  # captured output (tests): nothing to protect
    try:
        return args.func(args)
    except (BenchError, DataError) as err:
        print(f"bench: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; finished runs are kept, rerun to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
