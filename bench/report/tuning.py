"""Baseline tuning: validation NDCG@10 of every setting a model was tuned over, and which one validation picks.

Tuning runs are grid entries named ``<model>-tune-<setting>`` (from the profile's
``tuning:`` or written out as variants, as SASRec's in ``full.yaml``); the base run on
the same seeds is the ``default`` setting.  A run named ``<model>-tuned`` is the chosen
setting on more seeds: :func:`choice_problem` checks that it runs exactly the
validation-best setting, so a tuned baseline cannot be picked on test.  Seeds the chosen
setting already ran under its own name are not rerun: :func:`stand_in_runs` lends them.
"""
from __future__ import annotations

import pandas as pd

from bench.fmt import dataset_title, md_table, pct
from bench.report.context import Context, Table

TUNE_TAG = "-tune-"  # a tuning run is named <model>-tune-<setting>
TUNED_TAG = "-tuned"  # the validation-best setting rerun on more seeds: <model>-tuned
TUNED_SEEDS = (0, 1, 2)  # the seeds a tuned baseline is reported on (issue "controls": the best setting, seeds 0-2)


def tuning_table(records: list) -> pd.DataFrame:
    """Validation (and test) NDCG@10 of every tuning setting beside the model's default.

    One row per (dataset, model, setting); ``best`` marks the highest validation mean
    within (dataset, model).  Defaults are the base runs on the seeds the tuning used.
    """
    records = [r for r in records if r.get("status", "ok") == "ok"]
    tuned = [r for r in records if TUNE_TAG in r["model"]]
    if not tuned:
        return pd.DataFrame()
    seeds = {(r["dataset"], r["base_model"]): set() for r in tuned}
    for r in tuned:
        seeds[(r["dataset"], r["base_model"])].add(r["seed"])
    rows = []
    for r in records:
        key = (r["dataset"], r["base_model"])
        is_default = r["model"] == r["base_model"] and key in seeds and r["seed"] in seeds[key]
        if TUNE_TAG in r["model"] or is_default:
            setting = "default" if is_default else r["model"].split(TUNE_TAG, 1)[1]
            rows.append({"dataset": r["dataset"], "model": r["base_model"], "setting": setting, "seed": r["seed"],
                         "valid_NDCG@10": r["metrics"]["valid"]["NDCG@10"],
                         "test_NDCG@10": r["metrics"]["test"]["NDCG@10"]})
    frame = (pd.DataFrame(rows).groupby(["dataset", "model", "setting"], as_index=False)
             .agg(seeds=("seed", "count"), valid_NDCG10=("valid_NDCG@10", "mean"),
                  test_NDCG10=("test_NDCG@10", "mean")))
    frame["best"] = frame["valid_NDCG10"] == frame.groupby(["dataset", "model"])["valid_NDCG10"].transform("max")
    return frame


def validation_choice(records: list, dataset: str, base: str) -> dict | None:
    """The setting of ``base`` with the best validation NDCG@10 on ``dataset``, or None if it was not tuned.

    Returns {setting, model (the run name of that setting), params (its resolved params, lowest
    seed), n_settings (how many settings the tuning grid holds so far), variant_params (what that
    setting changes from the model's YAML)}.
    """
    mine = [r for r in records if r["dataset"] == dataset and r.get("base_model") == base
            and r.get("status", "ok") == "ok"]
    frame = tuning_table(mine)
    if not len(frame):
        return None
    setting = frame[frame["best"]].iloc[0]["setting"]
    name = base if setting == "default" else f"{base}{TUNE_TAG}{setting}"
    source = min((r for r in mine if r["model"] == name), key=lambda r: r["seed"])
    return {"setting": setting, "model": name, "params": source.get("params") or {}, "n_settings": len(frame),
            "variant_params": (source.get("variant") or {}).get("params") or {}}


def _ok_runs(records: list, dataset: str, model: str) -> list:
    return [r for r in records if r["dataset"] == dataset and r["model"] == model and r.get("status", "ok") == "ok"]


def _mismatch(choice: dict | None, runs: list, n_settings: int) -> str:
    """Why ``runs`` (of one tuned model on one dataset) are not the validation ``choice``; '' when they are."""
    have = choice["n_settings"] if choice else 0
    if have < n_settings:
        return f"the tuning grid of {runs[0]['base_model']} has {have} of {n_settings} settings"
    for r in runs:
        params = r.get("params") or {}
        differ = sorted(k for k in set(params) | set(choice["params"]) if params.get(k) != choice["params"].get(k))
        if differ:
            return (f"{r['model']} seed {r['seed']} is not the validation-best setting {choice['setting']} "
                    f"(differs in {', '.join(differ)})")
    return ""


def stand_in_runs(records: list, tuned_names) -> list:
    """Relabelled copies of the runs that stand for seeds a ``<model>-tuned`` has not run itself.

    Validation's chosen setting already ran on some seeds under its own name (``<model>-tune-<setting>``,
    or the base model when the choice is the default).  Its run on a seed is that seed's
    ``<model>-tuned`` run: the same resolved config and seed (the run name is not part of
    ``config_hash``), so a rerun under the other name would repeat it bit for bit.  Each copy is
    named ``tuned``, keeps its ``_dir`` (its ranks), is a variant (never a Table 2 row) and names its
    source in ``stands_in_from``.  Idempotent: seeds ``tuned`` already has (copies included) are skipped.
    """
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    copies = []
    for tuned in tuned_names:
        if not tuned.endswith(TUNED_TAG):
            continue
        base = tuned[: -len(TUNED_TAG)]
        for dataset in sorted({r["dataset"] for r in ok if r.get("base_model") == base}):
            choice = validation_choice(ok, dataset, base)
            if not choice:
                continue
            own = {r["seed"] for r in _ok_runs(ok, dataset, tuned)}
            for r in sorted(_ok_runs(ok, dataset, choice["model"]), key=lambda r: r["seed"]):
                if r["seed"] not in own:
                    copies.append({**r, "model": tuned, "stands_in_from": r["model"],
                                   "variant": {"name": tuned, "params": choice["variant_params"]}})
    return copies


def stand_in_note(copies: list, dataset: str, tuned: str) -> str:
    """'seed 0 is `SASRec-tune-h128`'s run (the same config and seed)': where the copies of ``tuned``
    on ``dataset`` come from; '' when it has none."""
    mine = [r for r in copies if r["dataset"] == dataset and r["model"] == tuned]
    by_source = {}
    for r in mine:
        by_source.setdefault(r["stands_in_from"], []).append(r["seed"])
    return "; ".join(f"{_seeds(s)} {'are' if len(s) > 1 else 'is'} `{src}`'s run{'s' * (len(s) > 1)} "
                     "(the same config and seed)" for src, s in by_source.items())


def _seeds(seeds) -> str:
    """[0] -> 'seed 0'; [1, 2] -> 'seeds 1, 2'."""
    return f"seed{'s' * (len(seeds) > 1)} {', '.join(map(str, seeds))}"


def choice_problem(records: list, dataset: str, tuned: str, n_settings: int) -> str:
    """Why the ``tuned`` runs on ``dataset`` (its own and :func:`stand_in_runs`) are not (yet) the
    validation choice; '' when they are.

    Needs the whole tuning grid of their base model (``n_settings`` settings with records) and every
    ``tuned`` record's resolved params equal to those of the validation-best setting's run.
    """
    runs = _ok_runs(records + stand_in_runs(records, [tuned]), dataset, tuned)
    if not runs:
        return f"no {tuned} run"
    return _mismatch(validation_choice(records, dataset, runs[0]["base_model"]), runs, n_settings)


def _choice_lines(records: list, frame: pd.DataFrame) -> str:
    """One line per tuned (dataset, model): the validation choice and whether ``<model>-tuned`` runs it."""
    lines = []
    for (dataset, base), group in frame.groupby(["dataset", "model"], sort=False):
        choice = validation_choice(records, dataset, base)
        tuned = f"{base}{TUNED_TAG}"
        own = sorted(_ok_runs(records, dataset, tuned), key=lambda r: r["seed"])
        copies = [r for r in stand_in_runs(records, [tuned]) if r["dataset"] == dataset]
        state = _mismatch(choice, own + copies, len(group)) if own or copies else ""
        if not state:
            parts = [f"`{tuned}` runs it on {_seeds([r['seed'] for r in own])}"] if own else []
            if copies:
                parts.append(stand_in_note(copies, dataset, tuned))
            need = [s for s in TUNED_SEEDS if s not in {r["seed"] for r in own + copies}]
            if need and own:  # the profile has the variant already
                parts.append(f"{_seeds(need)} ha{'ve' if len(need) > 1 else 's'} no run yet")
            elif need:
                params = ", ".join(f"{k}: {v}" for k, v in sorted(choice["variant_params"].items()))
                parts.append(f"{_seeds(need)} need{'s' * (len(need) == 1)} the profile variant `{{name: {tuned}, "
                             f"model: {base}, params: {{{params}}}, datasets: [{dataset}], "
                             f"seeds: [{', '.join(map(str, need))}]}}`")
            state = "; ".join(parts)
        lines.append(f"- {dataset_title(dataset)}, {base}: validation picks `{choice['setting']}` "
                     f"of {len(group)} settings; {state}.")
    return "\n".join(lines)


def _tuning_md(frame: pd.DataFrame, records: list) -> str:
    rows = [[dataset_title(r["dataset"]), r["model"], ("**%s**" % r["setting"]) if r["best"] else r["setting"],
             str(r["seeds"]), pct(r["valid_NDCG10"]), pct(r["test_NDCG10"])] for _, r in frame.iterrows()]
    return ("# Baseline tuning on the validation split\n\n"
            "Every setting a model was tuned over, on the validation split only: the settings its YAML lists "
            "under `tuning` (left open by its paper), varied one at a time around the default, or a grid "
            "written out as `<model>-tune-<setting>` variants (SASRec in `full`, docs/protocols.md#controls). Bold: "
            "the best validation NDCG@10 of that model and dataset; test NDCG@10 is shown, never used. The "
            "lines below the table say which setting validation picks and whether `<model>-tuned` (that "
            "setting on more seeds) runs exactly it.\n\n"
            + md_table(["Dataset", "Model", "Setting", "Seeds", "valid NDCG@10 (%)", "test NDCG@10 (%)"], rows)
            + "\n\n" + _choice_lines(records, frame) + "\n")


def tuning(ctx: Context) -> list[Table]:
    """The tuning table, when the profile ran tuning settings."""
    frame = tuning_table(ctx.col.records)
    return [Table("Baseline tuning (validation)", "tuning", _tuning_md(frame, ctx.col.ok_records), frame)] \
        if len(frame) else []
