"""Speed benchmark: the suite's training/evaluation path against RecBole's own trainer.

Same model class, same hyperparameters, same training instances (every prefix of
every training sequence), same machine, one process, measured side by side:

* RecBole: ``create_dataset`` + ``data_preparation`` + ``Trainer._train_epoch`` over
  its ``DataLoader`` (batches padded to ``MAX_ITEM_LIST_LENGTH``), and
  ``Trainer.evaluate`` on the full-ranking validation set.  Anomaly mode is off
  (``bench.compat``), so RecBole is measured at its best, not with the 1.6x penalty
  that importing its model zoo normally adds.  With ``--recbole-batches N`` only N
  batches are timed and the epoch time is extrapolated (its batches all have the
  same padded shape, so the per-batch cost is flat).
* Suite: ``bench.engine`` epoch (trimmed, length-bucketed batches) and validation.

Writes ``<reports>/speed/speed-<dataset>.md`` and ``.json``.  A benchmark, not a test.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench import engine
from bench.runner import seed_everything
from bench.zoo import build_model, get_spec, resolve_params
from datasets.prepare import load_card, load_sequences


def _parse_sets(pairs):
    import yaml

    return {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs or [])}


def time_suite(spec, params, seqs, seed=0, epochs=1, max_batches=None, device="cpu", max_prefixes=None,
               eval_seqs=None) -> dict:
    """Seconds per training epoch and per full validation pass on the suite's path.

    Times ``bench.engine``'s own ``train_epoch`` and ``rank_targets``, so a change to the
    training path is timed as it is.  With ``max_batches`` only the first N batches of the
    (shuffled, length-bucketed) epoch are timed, after 2 warm-up batches, and the epoch
    time is extrapolated: the batches are a random sample of the epoch's.  ``eval_seqs``:
    the users whose validation is timed (default: all of ``seqs``).
    """
    max_len = params["MAX_ITEM_LIST_LENGTH"]
    train = engine.training_instances(seqs, max_len, max_prefixes)
    valid = engine.evaluation_instances(seqs if eval_seqs is None else eval_seqs, max_len, "valid")
    seed_everything(seed)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1, device)
    width = max_len if getattr(model, "fixed_length_input", False) else None
    opts, _ = engine.make_optimizers(model, params)
    rng = np.random.default_rng(seed)
    epoch_s, losses = [], []
    for epoch in range(epochs):
        if hasattr(model, "set_epoch"):
            model.set_epoch(epoch)
        batches = engine.epoch_batches(train.lengths, int(params["train_batch_size"]), rng,
                                       params.get("length_bucketing", True))
        timed = batches
        if max_batches:
            engine.train_epoch(model, opts, train, batches[:2], width, device, epoch)
            timed = batches[2 : 2 + max_batches]
        _sync(device)
        t0 = time.perf_counter()
        loss, _ = engine.train_epoch(model, opts, train, timed, width, device, epoch)
        _sync(device)
        epoch_s.append((time.perf_counter() - t0) * len(batches) / max(len(timed), 1))
        losses.append(loss)
    t0 = time.perf_counter()
    engine.rank_targets(model, valid, int(params["eval_batch_size"]), width, device)
    _sync(device)
    result = {"epoch_s": float(np.mean(epoch_s)), "eval_s": time.perf_counter() - t0,
              "batches": len(batches), "timed_batches": len(timed), "instances": len(train), "loss": losses[-1]}
    table = getattr(model, "item_embedding", None)
    if params.get("loss_type") == "CE" and table is not None and torch.device(device).type == "cpu" and eval_seqs is None:
        result["softmax_ms"] = softmax_floor_ms(seqs.n_items, table.weight.shape[1], int(params["train_batch_size"]))
    return result


def _sync(device) -> None:
    """CUDA runs asynchronously: wait for it before reading the clock."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def softmax_floor_ms(n_items: int, width: int, batch: int, repeats: int = 30, seed: int = 0) -> float:
    """ms for the full-catalogue cross-entropy of one batch, forward and backward.

    A (batch, width) output scored against a (n_items, width) item table: the part of
    a CE step that trimming cannot touch, computed identically on both paths.  RecBole's
    ms per batch divided by this is the most any harness could gain on that model.
    """
    gen = torch.Generator().manual_seed(seed)
    table = torch.randn(n_items, width, generator=gen, requires_grad=True)
    out = torch.randn(batch, width, generator=gen, requires_grad=True)
    target = torch.randint(1, n_items, (batch,), generator=gen)

    def step():
        torch.nn.functional.cross_entropy(out @ table.t(), target).backward()
        table.grad, out.grad = None, None

    step()
    t0 = time.perf_counter()
    for _ in range(repeats):
        step()
    return 1000 * (time.perf_counter() - t0) / repeats


def time_recbole(spec, params, seqs, max_batches=None, seed=0) -> dict:
    """Seconds per epoch (possibly extrapolated) and per validation on RecBole's path."""
    from recbole.trainer import Trainer

    from bench.recbole_path import _first_batches, _inside, recbole_data

    with tempfile.TemporaryDirectory(prefix="bench-speed-") as workdir:
        t0 = time.perf_counter()
        config, _, train, valid, _ = recbole_data(spec.cls, {**params, "seed": seed}, seqs, Path(workdir))
        prep_s = time.perf_counter() - t0
        model = spec.cls(config, train.dataset)
        n_batches = len(train)
        with _inside(Path(workdir)):
            trainer = Trainer(config, model)
            warmup = 3 if max_batches else 0
            if warmup:
                trainer._train_epoch(_first_batches(train, warmup), 0, show_progress=False)
            t0 = time.perf_counter()
            data = _first_batches(train, max_batches) if max_batches else train
            trainer._train_epoch(data, 0, show_progress=False)
            timed = time.perf_counter() - t0
            measured = min(max_batches or n_batches, n_batches)
            t0 = time.perf_counter()
            trainer.evaluate(valid, load_best_model=False, show_progress=False)
            eval_s = time.perf_counter() - t0
    return {"epoch_s": timed / measured * n_batches, "eval_s": eval_s, "prep_s": prep_s,
            "batches": n_batches, "timed_batches": measured, "instances": len(train.dataset)}


def speed_params(dataset: str, model: str, overrides: dict, profile: dict | None) -> tuple[dict, int | None]:
    """(params, max_train_prefixes) of ``model``: a profile's resolved settings (``--profile``),
    else the model YAML at the card's history length; ``overrides`` win."""
    spec = get_spec(model)
    if profile is not None:
        from bench.profiles import Entry
        from bench.runner import per_dataset, resolve

        params, _ = resolve(Entry(dataset, spec.name, 0, spec.name), profile)
        return {**params, **overrides}, per_dataset(profile.get("max_train_prefixes"), dataset)
    max_len = load_card(dataset)["max_seq_len"]
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": max_len}, overrides)
    params["MAX_ITEM_LIST_LENGTH"] = min(max_len, spec.params.get("MAX_ITEM_LIST_LENGTH", max_len))
    return params, None


def run_speed(dataset: str, models: list[str], overrides: dict, recbole_batches: int | None,
              skip_recbole: bool, reports_dir, data_dir=None, max_users=None, profile=None,
              device="cpu", max_batches=None) -> Path:
    seqs = load_sequences(dataset, data_dir)
    if max_users:
        seqs = seqs.subset(np.arange(min(max_users, seqs.n_users)))
    prof = None
    if profile:
        from bench.profiles import load_profile

        prof = load_profile(profile)
    rows = []
    for name in models:
        spec = get_spec(name)
        params, prefixes = speed_params(dataset, name, overrides, prof)
        row = {"model": spec.name, "params": {k: params[k] for k in ("train_batch_size", "MAX_ITEM_LIST_LENGTH")}}
        print(f"[speed] {spec.name}: suite ...", flush=True)
        row["suite"] = time_suite(spec, params, seqs, max_batches=max_batches, device=device, max_prefixes=prefixes)
        print(f"[speed] {spec.name}: suite {row['suite']['epoch_s']:.1f} s/epoch", flush=True)
        if not skip_recbole:
            print(f"[speed] {spec.name}: RecBole ...", flush=True)
            row["recbole"] = time_recbole(spec, params, seqs, recbole_batches)
            row["speedup_epoch"] = row["recbole"]["epoch_s"] / row["suite"]["epoch_s"]
            row["speedup_eval"] = row["recbole"]["eval_s"] / row["suite"]["eval_s"]
            print(f"[speed] {spec.name}: RecBole {row['recbole']['epoch_s']:.1f} s/epoch "
                  f"-> {row['speedup_epoch']:.1f}x", flush=True)
        rows.append(row)
    tag = {**overrides, **({"profile": profile} if profile else {}),
           **({"device": str(device)} if str(device) != "cpu" else {})}
    return write_speed_report(rows, dataset, tag, recbole_batches, reports_dir, seqs.n_users, device)


def write_speed_report(rows, dataset, overrides, recbole_batches, reports_dir, n_users, device="cpu") -> Path:
    from bench.runner import environment

    folder = Path(reports_dir) / "speed"
    folder.mkdir(parents=True, exist_ok=True)
    tag = "-".join([dataset] + [f"{k}{v}" for k, v in sorted(overrides.items())])
    env = environment(str(device))
    lines = [f"# Speed: suite path vs RecBole's Trainer — {dataset}", "",
             f"{n_users} users; overrides {overrides or 'none'}; {env['cpu']}, {env['threads']} threads, "
             f"device {env['device']}; "
             f"torch {env['torch']}, RecBole {env['recbole']}; git {env['git_revision'][:10]}.",
             f"RecBole epochs {'extrapolated from %s timed batches' % recbole_batches if recbole_batches else 'measured in full'};"
             " anomaly mode off for both.", "",
             "Softmax ms: the full-catalogue cross-entropy of one batch (forward + backward), the same on both",
             "paths; bound = RecBole ms per batch / softmax ms, the most any harness could gain.", "",
             "| model | instances | batches | RecBole s/epoch | suite s/epoch | speed-up | softmax ms | bound | RecBole valid s | suite valid s | speed-up |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        rb, su = row.get("recbole"), row["suite"]
        soft = su.get("softmax_ms")
        soft_cell = f"{soft:.1f}" if soft else "–"
        bound = f"{1000 * rb['epoch_s'] / rb['batches'] / soft:.1f}x" if rb and soft else "–"
        lines.append(
            f"| {row['model']} | {su['instances']:,} | {su['batches']} | "
            f"{rb['epoch_s']:.1f} | {su['epoch_s']:.1f} | {row['speedup_epoch']:.1f}x | {soft_cell} | {bound} | "
            f"{rb['eval_s']:.1f} | {su['eval_s']:.1f} | {row['speedup_eval']:.1f}x |" if rb else
            f"| {row['model']} | {su['instances']:,} | {su['batches']} | – | {su['epoch_s']:.1f} | – | {soft_cell} | – | – | {su['eval_s']:.1f} | – |")
    md = folder / f"speed-{tag}.md"
    md.write_text("\n".join(lines) + "\n")
    (folder / f"speed-{tag}.json").write_text(json.dumps({"rows": rows, "env": env, "overrides": overrides,
                                                         "recbole_batches": recbole_batches}, indent=1, default=str))
    print(md.read_text())
    return md


def add_speed_parser(sub, common):
    parser = sub.add_parser("speed", help="benchmark: suite vs RecBole's trainer, per epoch and per validation")
    common(parser, profile=False)
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--models", nargs="+", default=["GRU4Rec", "SASRec", "BERT4Rec", "Caser"])
    parser.add_argument("--set", nargs="*", default=[], help="hyperparameter overrides key=value")
    parser.add_argument("--recbole-batches", type=int, default=None, help="time only N RecBole batches")
    parser.add_argument("--skip-recbole", action="store_true")
    parser.add_argument("--max-users", type=int, default=None)
    parser.add_argument("--profile", default=None, help="time each model at this profile's settings")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="time only N training batches and extrapolate the epoch")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    def cmd(args):
        from bench.runner import resolve_device

        run_speed(args.dataset, args.models, _parse_sets(args.set), args.recbole_batches,
                  args.skip_recbole, args.reports_dir, args.data_dir, args.max_users, args.profile,
                  resolve_device(args.device), args.max_batches)
        return 0

    parser.set_defaults(func=cmd)
