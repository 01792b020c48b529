"""The run grid: every entry of a profile, resumable, one failure never stops it.

Executors: ``local`` (default, in this process) and ``ray`` (each entry a Ray task
on a running cluster, writing to the same results store).  Both skip entries whose
record already exists with the same config hash, so an interrupted grid resumes.
"""
from __future__ import annotations

import sys

from tqdm import tqdm

from bench.errors import BenchError, DamagedFile
from bench.profiles import grid, load_profile, prioritised
from datasets.prepare import DataError, load_card, resolve_data_dir, verified_source


def available_datasets(profile: dict, data_dir=None) -> tuple[list[str], dict[str, str]]:
    """Datasets whose file is present and verified; the others with the reason."""
    ok, missing = [], {}
    for name in profile["datasets"]:
        try:
            verified_source(load_card(name), resolve_data_dir(data_dir))
            ok.append(name)
        except DataError as err:
            missing[name] = str(err)
    return ok, missing


def expected_entries(profile: dict, models=None, datasets=None, seeds=None):
    check_selection(profile, models, datasets, seeds)
    return grid(profile, models, datasets, seeds)


def check_selection(profile: dict, models=None, datasets=None, seeds=None) -> None:
    """--models/--datasets/--seeds must name parts of the profile: a typo would silently run
    (or list) everything else.  ``BenchError`` naming the option and the valid names."""
    everything = grid(profile)
    known = {
        "--models": (sorted({e.model for e in everything}, key=str.lower), models, str.lower),
        "--datasets": (list(profile["datasets"]), datasets, str),
        "--seeds": ([int(s) for s in profile["seeds"]], seeds, int),
    }
    for option, (valid, given, norm) in known.items():
        bad = [g for g in (given or []) if norm(g) not in {norm(v) for v in valid}]
        if bad:
            raise BenchError(f"{option} {' '.join(map(str, bad))}: not in profile '{profile['name']}' "
                             f"(its {option[2:]}: {', '.join(map(str, valid))})")


def present_entries(profile: dict, data_dir=None, models=None, datasets=None, seeds=None):
    """(the grid's entries on the datasets whose file is present, in the profile's priority order,
    {skipped dataset: why})."""
    check_selection(profile, models, datasets, seeds)
    present, missing = available_datasets(profile, data_dir)
    wanted = [d for d in (datasets or profile["datasets"]) if d in present]
    # grid() reads an empty dataset list as "all": with none present there is nothing to run
    entries = grid(profile, models, wanted, seeds) if wanted else []
    return prioritised(profile, entries), missing


def missing_entries(profile, results_dir, data_dir=None, models=None, datasets=None, seeds=None) -> list:
    """The grid's entries (datasets present only) that have no ok record yet, in priority order.

    profile: a profile's name, or the dict ``load_profile`` returns.
    """
    from bench import store

    profile = load_profile(profile) if isinstance(profile, str) else profile
    entries, _ = present_entries(profile, data_dir, models, datasets, seeds)
    return [e for e in entries if _status(store.run_dir(results_dir, profile["name"], e.dataset, e.model, e.seed))
            != "ok"]


def _status(folder) -> str | None:
    """A run folder's record status; a damaged record counts as no record (and is named on stderr)."""
    from bench import store

    try:
        return (store.read_record(folder) or {}).get("status")
    except store.DamagedFile as err:
        print(f"warning: {err}", file=sys.stderr)
        return None


def run_grid(profile_name, results_dir, data_dir=None, models=None, datasets=None, seeds=None,
             executor="local", address=None, device="auto", state_dir=None, save_every_s=None) -> list:
    """Run the grid; returns the entries that failed.

    A run another process is training (its state is locked) is left to that process.
    """
    profile = load_profile(profile_name)
    entries, missing = present_entries(profile, data_dir, models, datasets, seeds)
    for name, why in missing.items():
        if not datasets or name in datasets:
            tqdm.write(f"skipping dataset {name}: {why}")
    if executor == "ray":
        from bench.ray_executor import run_with_ray

        return run_with_ray(entries, profile, results_dir, data_dir, address)
    if executor != "local":
        raise BenchError(f"unknown executor '{executor}' (known: local, ray)")
    from bench.runner import run_entry

    failed = []
    bar = tqdm(entries, desc=f"grid {profile['name']}", unit="run")
    for entry in bar:
        name = f"{entry.dataset}/{entry.model}/seed-{entry.seed}"
        bar.set_postfix_str(name)

        def show_epoch(e, name=name):
            valid = "" if e["valid"] is None else f" valid NDCG@10 {e['valid']['NDCG@10']:.4f}"
            bar.set_postfix_str(f"{name} epoch {e['epoch']}{valid}")

        try:
            status, record = run_entry(entry, profile, results_dir, data_dir, device=device, state_dir=state_dir,
                                       save_every_s=save_every_s, progress=show_epoch, notify=tqdm.write)
        except DamagedFile as err:  # left as it is (nothing overwritten); the grid goes on
            failed.append(entry)
            tqdm.write(f"DAMAGED {name}: {err}")
            continue
        if status == "busy":
            tqdm.write(f"busy   {name}: another process is training it")
        elif status == "failed":
            failed.append(entry)
            tqdm.write(f"FAILED {entry.dataset}/{entry.model}/seed-{entry.seed}: "
                       f"{record['error']['type']}: {record['error']['message']}")
        elif status == "ok":
            m = record["metrics"]["test"]
            tqdm.write(f"ok     {entry.dataset}/{entry.model}/seed-{entry.seed}: HR@10 {m['HR@10']:.4f} "
                       f"NDCG@10 {m['NDCG@10']:.4f} ({record['timing']['epochs_run']} ep, "
                       f"{record['timing']['train_s']:.0f}s train{_resumed(record)})")
    bar.close()
    print(f"grid {profile['name']}: {len(entries)} runs, {len(failed)} failed", flush=True)
    return failed


def _resumed(record: dict) -> str:
    segments = (record.get("resume") or {}).get("segments") or []
    starts = [str(s["from_epoch"]) for s in segments[1:]]
    return f", resumed at epoch {', '.join(starts)}" if starts else ""
