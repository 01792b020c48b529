"""Baseline tuning: validation NDCG@10 of each setting a model's YAML leaves open (profiles with ``tuning:``)."""
from __future__ import annotations

import pandas as pd

from bench.fmt import dataset_title, md_table, pct
from bench.report.context import Context, Table

TUNE_TAG = "-tune-"  # a tuning run is named <model>-tune-<setting>


def tuning_table(records: list) -> pd.DataFrame:
    """Validation (and test) NDCG@10 of every tuning setting beside the model's default.

    One row per (dataset, model, setting); ``best`` marks the highest validation mean
    within (dataset, model).  Defaults are the base runs on the seeds the tuning used.
    """
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


def _tuning_md(frame: pd.DataFrame) -> str:
    rows = [[dataset_title(r["dataset"]), r["model"], ("**%s**" % r["setting"]) if r["best"] else r["setting"],
             str(r["seeds"]), pct(r["valid_NDCG10"]), pct(r["test_NDCG10"])] for _, r in frame.iterrows()]
    return ("# Baseline tuning on the validation split\n\n"
            "Each setting a model's YAML lists under `tuning` (left open by its paper), varied one at a time "
            "around the YAML default. Bold: the best validation NDCG@10 of that model and dataset. A bold "
            "setting other than `default` means the default in `models/<model>.yaml` should change.\n\n"
            + md_table(["Dataset", "Model", "Setting", "Seeds", "valid NDCG@10 (%)", "test NDCG@10 (%)"], rows))


def tuning(ctx: Context) -> list[Table]:
    """The tuning table, when the profile ran tuning settings."""
    frame = tuning_table(ctx.col.records)
    return [Table("Baseline tuning (validation)", "tuning", _tuning_md(frame), frame)] if len(frame) else []
