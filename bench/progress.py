"""``bench progress``: the runs still training, read from their saved states (not records).

A long run (DiffuRec-paper: hundreds of epochs on a CPU) spans many sessions; until its
record exists, its saved state (``bench.resume``) is the only place its curve lives.
This reads, for each missing entry of a profile whose state exists, the epoch reached,
the validation curve so far, the mean training seconds per epoch and the hours left:
at least (the patience runs out at the next validations) and at most (the epoch cap).
It is a snapshot of work in progress, never an input of a results table: with ``--out`` it also
writes the snapshot as JSON beside the Markdown, from which ``fidelity.md`` shows the curve so far
and the hours left of a recipe still in training (labelled as such, with the snapshot's time).
"""
from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import numpy as np

from bench import resume, store
from bench.fmt import md_table
from bench.grid import missing_entries
from bench.profiles import load_profile
from bench.runner import config_key
from datasets.prepare import load_sequences


def read_state(path) -> dict | None:
    """The payload of one ``state.pt`` (digest line skipped), or None if unreadable."""
    import torch

    try:
        raw = path.read_bytes()
        return torch.load(io.BytesIO(raw[raw.index(b"\n") + 1:]), weights_only=False, map_location="cpu")
    except (OSError, ValueError, RuntimeError, EOFError):
        return None


def run_progress(entry, profile: dict, payload: dict) -> dict:
    """One run's progress: epoch, curve, s/epoch, and the hours left at least and at most."""
    prog = payload["progress"]
    curve = list(prog.result.curve)
    train_s = [c["train_s"] for c in curve if c.get("train_s")]
    valid = [(c["epoch"] + 1, c["valid"]) for c in curve if c.get("valid")]
    return {"dataset": entry.dataset, "model": entry.model, "seed": entry.seed, "epochs_done": int(prog.epoch),
            "s_per_epoch": float(np.mean(train_s)) if train_s else float("nan"),
            "eval_s": float(prog.result.eval_s), "bad_validations": int(getattr(prog, "bad_validations", 0)),
            "valid": valid, "segments": len((payload.get("meta") or {}).get("segments") or []),
            "best_epoch": prog.result.best_epoch,
            "curve": [{"epoch": int(c["epoch"]) + 1, "train_loss": c.get("train_loss"),
                       "valid_ndcg10": (c.get("valid") or {}).get("NDCG@10")} for c in curve]}


def hours_left(p: dict, params: dict) -> tuple[float, float]:
    """(at least, at most) hours of training left, from the mean s/epoch of the epochs so far.

    At least: every validation from now on fails to improve, so the patience (stopping_step
    validations of eval_step epochs) runs out; at most: the run reaches its epoch cap.  The
    validations' own time is added at the mean cost of those so far.
    """
    epochs, step, patience = int(params["epochs"]), int(params.get("eval_step", 1)), int(params["stopping_step"])
    n_valid = max(len(p["valid"]), 1)
    per_valid = p["eval_s"] / n_valid
    least = min((patience - p["bad_validations"]) * step, epochs - p["epochs_done"])
    most = epochs - p["epochs_done"]
    to_h = lambda n: (n * p["s_per_epoch"] + (n / step) * per_valid) / 3600  # noqa: E731
    return to_h(max(least, 0)), to_h(max(most, 0))


def in_progress(profile_name: str, results_dir, data_dir=None, state_dir=None) -> list[dict]:
    """Progress rows of the profile's missing runs that have a saved state, in priority order."""
    profile = load_profile(profile_name)
    root = resume.state_dir(state_dir)
    rows, cache = [], {}
    for entry in missing_entries(profile, results_dir, data_dir):
        if entry.dataset not in cache:
            cache[entry.dataset] = load_sequences(entry.dataset, data_dir)
        full = cache[entry.dataset]
        key = config_key(entry, profile, full.sha256, full.n_users)
        path = root / store.config_hash(key)[:24] / "state.pt"
        payload = read_state(path) if path.exists() else None
        if payload is None:
            continue
        p = run_progress(entry, profile, payload)
        p["hours_left_least"], p["hours_left_most"] = hours_left(p, key["params"])
        rows.append(p)
    return rows


def progress_md(profile_name: str, rows: list[dict]) -> str:
    """A Markdown snapshot: one row per run in training, then each run's validation NDCG@10 so far."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# Runs in training ({profile_name}), snapshot of {now}\n\n"
            "Read from the runs' saved states by `bench progress`, not from records: these runs have not "
            "finished and no table uses them. Hours left: at least (no validation improves again) and at most "
            "(the epoch cap), at the mean training and validation time so far on the machine that trains them.\n\n")
    if not rows:
        return text + "No run of this profile is in training.\n"
    text += md_table(["Run", "Epochs done", "s/epoch", "Validations", "Best epoch", "Hours left (least–most)",
                      "Pieces"],
                     [[f"{r['dataset']}/{r['model']}/seed-{r['seed']}", r["epochs_done"], f"{r['s_per_epoch']:.0f}",
                       len(r["valid"]), (r["best_epoch"] + 1) if r["valid"] and r["best_epoch"] is not None else "–",
                       f"{r['hours_left_least']:.1f}–{r['hours_left_most']:.1f}", r["segments"]] for r in rows])
    for r in rows:
        if r["valid"]:
            text += (f"\n{r['dataset']}/{r['model']}/seed-{r['seed']}, validation NDCG@10 (%) after epoch: "
                     + ", ".join(f"{e}: {100 * v['NDCG@10']:.3f}" for e, v in r["valid"]) + "\n")
    return text


SNAPSHOT_KEYS = ("dataset", "model", "seed", "epochs_done", "s_per_epoch", "best_epoch", "hours_left_least",
                 "hours_left_most", "segments", "curve")


def progress_json(profile_name: str, rows: list[dict], when: str | None = None) -> dict:
    """The snapshot as data, for reports that show runs in training (``bench.report.fidelity``):
    {profile, snapshot: 'YYYY-MM-DD HH:MM UTC', runs: [{SNAPSHOT_KEYS}]}; a curve row is
    {epoch (1-based), train_loss, valid_ndcg10 (fraction, None where not validated)}."""
    when = when or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return {"profile": profile_name, "snapshot": when,
            "runs": [{k: r.get(k) for k in SNAPSHOT_KEYS} for r in rows]}


def snapshot_path(reports_dir, profile_name: str) -> Path:
    """Where ``bench progress --out`` of the campaign keeps its data: reports/speed/in-progress-<profile>.json."""
    return Path(reports_dir) / "speed" / f"in-progress-{profile_name}.json"


def read_snapshot(reports_dir, profile_name: str) -> dict | None:
    """The committed snapshot of runs in training, or None when there is none (or it cannot be read)."""
    path = snapshot_path(reports_dir, profile_name)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def add_progress_parser(sub, common) -> None:
    parser = sub.add_parser("progress", help="runs still training: epoch, validation curve, hours left (from states)")
    common(parser)
    parser.add_argument("--state-dir", default=None, help="run states (default $BENCH_STATE_DIR, else .cache/runs)")
    parser.add_argument("--out", default=None, help="also write the Markdown snapshot to this file")

    def cmd(args):
        from pathlib import Path

        name = load_profile(args.profile)["name"]
        rows = in_progress(args.profile, args.results_dir, args.data_dir, args.state_dir)
        text = progress_md(name, rows)
        print(text, end="")
        if args.out:  # the Markdown for readers, the JSON beside it for the reports (fidelity.md)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text)
            Path(args.out).with_suffix(".json").write_text(
                json.dumps(progress_json(name, rows), indent=1, default=float) + "\n")
        return 0

    parser.set_defaults(func=cmd)
