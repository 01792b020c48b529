"""Fidelity: does the suite's DiffuRec reproduce the authors' DiffuRec, and what does that change?

The reviewer's first objection to the headline is "your DiffuRec is weaker than the
authors'".  This report answers it from the records, on each dataset with runs:

1. DiffuRec under each recipe -- clean (the suite's protocol), ``paper-es`` (the release's
   model and any-metric checkpoint, stopped early) and ``paper`` (the release end to end) --
   beside the paper's Table 2 and the public reruns of the release that issue 25 quotes;
2. each cause run (one release difference switched on, everything else clean; then
   combinations of those that helped) against clean DiffuRec of the same seed, paired over
   users, and the share of the clean run's NDCG@10 gap to the paper it closes;
3. DiffuRec against SASRec under each recipe (SASRec-paper: the release's schedule and
   selection rule applied to SASRec), by the headline test over seeds and users, with the
   paired interval over users on their common seeds beside it.

A cause run's interval is the paired t-interval over users against clean DiffuRec of the
same seed: with one seed on each side it conditions on the two trained models (how sure we are
about *these* models on these users, not a retrained one), so the seed-to-seed SD of clean
DiffuRec is printed beside it for scale.
A run still in training is not in the records and enters no table of results; when the
campaign's snapshot (``bench progress --out reports/speed/in-progress-<profile>.md``, its JSON
beside it) holds a recipe's or a cause's run, a section "In training" shows its validation curve
so far beside clean DiffuRec's at the same epoch, and its hours left, under the snapshot's time.

Which runs are which is the profile's, not this module's: its ``fidelity:`` names the recipes
(``recipes``: name -> the DiffuRec and SASRec models trained under it and a line on what it is;
the first is the suite's own, the reference) and the cause models (``causes``: model -> the
release difference it switches on, or the differences of a combination).  A profile without ``fidelity:`` gets no report.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from bench.fmt import dataset_title, md_table, num
from bench.report.collect import METRICS, Collected
from bench.report.context import Context, Drawn, Missing, Table
from bench.report.figures.style import colors, new_fig
from bench.report.gap import PAPER_TABLES, paper_table
from bench.stats.hierarchical_bootstrap import compare_metric_rows

LEVEL = 0.95
SHOWN = ("HR@10", "NDCG@10", "NDCG@5", "NDCG@20")
# profiles trained at the paper's budget, whose numbers may be held against the paper's
COMPARABLE_PROFILES = ("full", "paper")


# =========================================================================== the profile's ``fidelity:``
def recipes_of(cfg: dict) -> dict[str, tuple[str, str]]:
    """{recipe: (DiffuRec model, the SASRec model it meets on the same terms)}, in the profile's order;
    the first recipe is the reference (the suite's clean protocol) every other is held against."""
    return {name: (r["diffurec"], r["sasrec"]) for name, r in (cfg.get("recipes") or {}).items()}


def reference_of(cfg: dict) -> str | None:
    """The reference recipe's name (the first), or None for a profile without recipes."""
    return next(iter(cfg.get("recipes") or {}), None)


def fidelity_models(cfg: dict | None) -> list[str]:
    """Every model the fidelity report pairs user by user: recipes' DiffuRec and SASRec, single causes."""
    cfg = cfg or {}
    return sorted({m for pair in recipes_of(cfg).values() for m in pair} | set(cfg.get("causes") or {}))


# =========================================================================== per-seed per-user values
def seed_values(col: Collected, dataset: str, model: str) -> dict[int, np.ndarray]:
    """{seed: (len(METRICS), n_users) per-user values} of one model's ok runs, on the dataset's users
    (``Collected.per_seed``, read by ``collect`` for the models the profile's ``fidelity:`` names)."""
    return dict(col.per_seed.get((dataset, model), {}))


def paired_difference(a: dict, b: dict, metric: str) -> dict:
    """Mean over users of (a − b) on the common seeds, each user's value averaged over those seeds.

    a, b: ``seed_values`` outputs.  Returns n_seeds, seeds, n_users, diff, ci_low, ci_high,
    p (paired t over users); NaN when the two share no seed.
    """
    seeds = sorted(set(a) & set(b))
    out = {"n_seeds": len(seeds), "seeds": seeds, "n_users": 0, "diff": np.nan, "ci_low": np.nan,
           "ci_high": np.nan, "p": np.nan}
    if not seeds:
        return out
    i = METRICS.index(metric)
    xa = np.mean([a[s][i] for s in seeds], axis=0)
    xb = np.mean([b[s][i] for s in seeds], axis=0)
    keep = np.isfinite(xa) & np.isfinite(xb)
    d = xa[keep] - xb[keep]
    out.update(n_users=int(keep.sum()), diff=float(d.mean()))
    if len(d) > 1 and np.any(d):
        res = sps.ttest_1samp(d, 0.0)
        ci = res.confidence_interval(confidence_level=LEVEL)
        out.update(ci_low=float(ci.low), ci_high=float(ci.high), p=float(res.pvalue))
    return out


def headline_difference(a: dict, b: dict, metric: str) -> dict:
    """The headline test (``bench.stats.hierarchical_bootstrap``) of a − b over every seed of each side and
    the users both ranked: ci_low, ci_high (95 %), p, p_a_beats_b; NaN without runs on a side."""
    r = compare_metric_rows(a, b, METRICS.index(metric))
    return {"ci_low": r.ci_low, "ci_high": r.ci_high, "p": r.p, "p_a_beats_b": r.p_a_beats_b}


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high): the t-interval over users of one run's per-user values (n_users,)."""
    v = values[np.isfinite(values)]
    res = sps.ttest_1samp(v, 0.0)
    ci = res.confidence_interval(confidence_level=LEVEL)
    return float(v.mean()), float(ci.low), float(ci.high)


# =========================================================================== frames
def references(dataset: str) -> dict:
    """{source: {metric: percent}}: the paper's Table 2 DiffuRec row and the quoted public reruns."""
    paper = paper_table("table2")
    paper = paper[(paper["dataset"] == dataset) & (paper["model"] == "DiffuRec")]
    out = {"paper": dict(zip(paper["metric"], paper["value_percent"]))}
    reruns_path = PAPER_TABLES / "reruns.csv"
    if reruns_path.exists():
        reruns = pd.read_csv(reruns_path, comment="#")
        reruns = reruns[reruns["dataset"] == dataset]
        if len(reruns):
            out["reruns"] = dict(zip(reruns["metric"], reruns["value_percent"]))
    return out


def recipe_frame(cfg: dict, dataset: str, values: dict) -> pd.DataFrame:
    """One row per (recipe, metric) with a DiffuRec run: mean over seeds, sample SD, n, ratio to the paper."""
    ref = references(dataset)
    rows = []
    for recipe, (model, _) in recipes_of(cfg).items():
        runs = values.get(model) or {}
        if not runs:
            continue
        for metric in METRICS:
            i = METRICS.index(metric)
            per_seed = np.array([np.nanmean(m[i]) for m in runs.values()])
            pooled = np.concatenate([m[i] for m in runs.values()])
            if len(runs) == 1:  # one trained model: how sure we are about it on these users
                _, lo, hi = mean_interval(pooled)
            else:  # several: the t-interval over seeds of the mean
                half = sps.t.ppf(0.5 + LEVEL / 2, len(runs) - 1) * per_seed.std(ddof=1) / np.sqrt(len(runs))
                lo, hi = per_seed.mean() - half, per_seed.mean() + half
            paper = ref["paper"].get(metric, np.nan)
            mean = 100 * per_seed.mean()
            rows.append({"dataset": dataset, "recipe": recipe, "model": model, "metric": metric,
                         "n_seeds": len(runs), "mean_pct": mean,
                         "sd_pct": 100 * per_seed.std(ddof=1) if len(runs) > 1 else np.nan,
                         "users_ci_low_pct": 100 * lo, "users_ci_high_pct": 100 * hi,
                         "paper_pct": paper, "ratio_to_paper": mean / paper if paper else np.nan,
                         "reruns_pct": ref.get("reruns", {}).get(metric, np.nan)})
    return pd.DataFrame(rows)


def cause_frame(cfg: dict, dataset: str, values: dict) -> pd.DataFrame:
    """Each cause run against clean DiffuRec on their common seeds, per SHOWN metric, and (``sasrec_*``)
    against the reference recipe's SASRec on their common seeds: whether the change lifts DiffuRec past it."""
    clean_model, sasrec_model = recipes_of(cfg)[reference_of(cfg)]
    clean, sasrec = values.get(clean_model) or {}, values.get(sasrec_model) or {}
    paper = references(dataset)["paper"]
    rows = []
    for model, what in (cfg.get("causes") or {}).items():
        runs = values.get(model) or {}
        if not runs or not clean:
            continue
        for metric in SHOWN:
            d, vs = paired_difference(runs, clean, metric), paired_difference(runs, sasrec, metric)
            i = METRICS.index(metric)
            clean_mean = 100 * np.mean([np.nanmean(clean[s][i]) for s in d["seeds"]]) if d["seeds"] else np.nan
            gap = paper.get(metric, np.nan) - clean_mean
            rows.append({"dataset": dataset, "model": model, "what": what, "metric": metric,
                         "seeds": ",".join(map(str, d["seeds"])), "n_users": d["n_users"],
                         "clean_pct": clean_mean, "diff_pct": 100 * d["diff"], "ci_low_pct": 100 * d["ci_low"],
                         "ci_high_pct": 100 * d["ci_high"], "p": d["p"],
                         "gap_closed": 100 * (100 * d["diff"]) / gap if np.isfinite(gap) and gap > 0 else np.nan,  # both in points
                         "sasrec": sasrec_model, "sasrec_seeds": ",".join(map(str, vs["seeds"])),
                         "sasrec_diff_pct": 100 * vs["diff"], "sasrec_ci_low_pct": 100 * vs["ci_low"],
                         "sasrec_ci_high_pct": 100 * vs["ci_high"]})
    return pd.DataFrame(rows)


def versus_sasrec_frame(cfg: dict, dataset: str, values: dict) -> pd.DataFrame:
    """DiffuRec − SASRec under each recipe: the headline test over both models' seeds and the users
    (``hb_*``), and the paired interval over users on the common seeds (conditional on the trained models)."""
    rows = []
    for recipe, (diffurec, sasrec) in recipes_of(cfg).items():
        a, b = values.get(diffurec) or {}, values.get(sasrec) or {}
        if not a or not b:
            continue
        for metric in SHOWN:
            d, hb = paired_difference(a, b, metric), headline_difference(a, b, metric)
            rows.append({"dataset": dataset, "recipe": recipe, "diffurec": diffurec, "sasrec": sasrec,
                         "metric": metric, "seeds": ",".join(map(str, d["seeds"])), "n_users": d["n_users"],
                         "n_seeds_diffurec": len(a), "n_seeds_sasrec": len(b),
                         "diff_pct": 100 * d["diff"], "ci_low_pct": 100 * d["ci_low"],
                         "ci_high_pct": 100 * d["ci_high"], "p": d["p"],
                         "hb_ci_low_pct": 100 * hb["ci_low"], "hb_ci_high_pct": 100 * hb["ci_high"], "hb_p": hb["p"],
                         "p_diffurec_beats": hb["p_a_beats_b"]})
    return pd.DataFrame(rows)


# =========================================================================== text
def _pm(lo: float, hi: float) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "–"


def verdict(recipes: pd.DataFrame, dataset: str, comparable: bool = True, reference: str = "clean") -> str:
    """Plain-words answer for one dataset: which recipe comes nearest the paper's NDCG@10, and how near.

    recipes: ``recipe_frame``'s rows; ``reference`` is the suite's own recipe, every other one a
    recipe of the release.  comparable: the profile trains at the paper's budget (``full``, ``paper``); a reduced profile
    (``quick``) reports the numbers but draws no conclusion about reproducing the paper.
    """
    nd = recipes[recipes["metric"] == "NDCG@10"].set_index("recipe")
    if reference not in nd.index:
        return f"{dataset_title(dataset)}: no {reference} DiffuRec run yet."
    paper = nd["paper_pct"].iloc[0]
    ref = nd.loc[reference]
    parts = [f"{reference} DiffuRec {ref['mean_pct']:.3f} % ({ref['ratio_to_paper']:.2f}× the "
             f"paper's {paper:.2f} %, {int(ref['n_seeds'])} seeds)"]
    release = [r for r in nd.index if r != reference]
    for r in release:
        row = nd.loc[r]
        inside = row["users_ci_low_pct"] <= paper <= row["users_ci_high_pct"]
        parts.append(f"the release's recipe `{r}` {row['mean_pct']:.3f} % ({row['ratio_to_paper']:.2f}×; the paper's "
                     f"value is {'inside' if inside else 'outside'} its 95 % interval "
                     f"{_pm(row['users_ci_low_pct'], row['users_ci_high_pct']).replace('+', '')})")
    text = f"**{dataset_title(dataset)}, NDCG@10:** " + "; ".join(parts) + ". "
    if not comparable:
        text += ("This profile trains on a reduced budget: compare the recipes within it, not with the paper's "
                 "numbers; the reproduction question is answered by the `full` profile.")
    elif not release:
        text += "No run of the release's recipe has finished yet, so the reproduction question is open. "
    else:
        best = max(release, key=lambda r: nd.loc[r, "mean_pct"])
        reproduced = nd.loc[best, "users_ci_low_pct"] <= paper <= nd.loc[best, "users_ci_high_pct"] or \
            nd.loc[best, "mean_pct"] >= paper
        text += ("The suite reproduces the authors' DiffuRec on this dataset. " if reproduced else
                 "Trained as its authors train it, DiffuRec still does not reach the paper's number: the gap is "
                 "not in the suite's protocol. ")
    return text


def _recipe_md(recipes: pd.DataFrame) -> str:
    rows = []
    for (recipe, model), g in recipes.groupby(["recipe", "model"], sort=False):
        g = g.set_index("metric")
        cells = []
        for m in SHOWN:
            r = g.loc[m]
            sd = f" ± {r['sd_pct']:.3f}" if np.isfinite(r["sd_pct"]) else ""
            cells.append(f"{r['mean_pct']:.3f}{sd} ({r['ratio_to_paper']:.2f}×)")
        rows.append([f"`{recipe}`", model, int(g["n_seeds"].iloc[0]), *cells])
    ref = recipes.drop_duplicates("metric").set_index("metric")
    rows.append(["paper, Table 2", "DiffuRec", "–", *[num(ref.loc[m, "paper_pct"], "{:.2f}") for m in SHOWN]])
    if ref["reruns_pct"].notna().any():
        rows.append(["public reruns (quoted)", "release", "–", *[num(ref.loc[m, "reruns_pct"], "{:.2f}") for m in SHOWN]])
    return md_table(["Recipe", "Model", "Seeds", *[f"{m} %" for m in SHOWN]], rows)


def _cause_md(causes: pd.DataFrame) -> str:
    rows = [[r["model"], r["what"], r["metric"], r["seeds"], f"{r['clean_pct']:.3f}",
             f"{r['diff_pct']:+.3f} {_pm(r['ci_low_pct'], r['ci_high_pct'])}",
             num(r["gap_closed"], "{:+.0f} %"), _vs_sasrec(r)]
            for _, r in causes.iterrows() if r["metric"] in ("HR@10", "NDCG@10", "NDCG@5")]
    return md_table(["Run", "Release difference(s), all else clean", "Metric", "Seed", "Clean DiffuRec %",
                     "Δ vs clean, points [95 % CI over users]", "Share of the gap to the paper closed",
                     "Run − SASRec, points [95 % CI over users] (seeds)"], rows)


def _vs_sasrec(r) -> str:
    """'Δ [low, high] (seeds)' of a cause run against the clean SASRec, or '–' without a common seed."""
    if not np.isfinite(r.get("sasrec_diff_pct", np.nan)):
        return "–"
    return f"{r['sasrec_diff_pct']:+.3f} {_pm(r['sasrec_ci_low_pct'], r['sasrec_ci_high_pct'])} ({r['sasrec_seeds']})"


def _versus_md(versus: pd.DataFrame) -> str:
    rows = [[f"`{r['recipe']}`", f"{r['diffurec']} − {r['sasrec']}", r["metric"],
             f"{r['n_seeds_diffurec']}/{r['n_seeds_sasrec']}", f"{r['diff_pct']:+.3f}",
             _pm(r["hb_ci_low_pct"], r["hb_ci_high_pct"]), num(r["hb_p"], "{:.3g}"), num(r["p_diffurec_beats"], "{:.2f}"),
             f"{_pm(r['ci_low_pct'], r['ci_high_pct'])} ({r['seeds']})"] for _, r in versus.iterrows()]
    return md_table(["Recipe", "Comparison", "Metric", "Seeds", "Δ points", "95 % CI (seeds and users)", "p",
                     "P(DiffuRec run beats SASRec run)", "95 % CI over users only (common seeds)"], rows)


def training_runs(cfg: dict, snapshot: dict | None, dataset: str) -> list[dict]:
    """The snapshot's runs on ``dataset`` that are a release recipe's DiffuRec or SASRec or a single cause
    (the reference recipe's models are the suite's base runs, followed by the campaign pages), each with
    ``role``: the recipe's name or 'cause: <what it switches on>'."""
    roles = {}
    for name, (d, s_) in list(recipes_of(cfg).items())[1:]:
        roles.setdefault(d, f"recipe `{name}`")
        roles.setdefault(s_, f"recipe `{name}` (SASRec)")
    roles.update({m: f"cause: {text}" for m, text in (cfg.get("causes") or {}).items()})
    return [{**r, "role": roles[r["model"]]} for r in (snapshot or {}).get("runs") or []
            if r.get("dataset") == dataset and r.get("model") in roles]


def _best_valid(curve: list) -> tuple[float, int] | None:
    """(best validation NDCG@10 as a fraction, its 1-based epoch) of a curve, or None without one."""
    valid = [(c["valid_ndcg10"], c["epoch"]) for c in curve if c.get("valid_ndcg10") is not None]
    return max(valid, key=lambda v: (v[0], -v[1])) if valid else None


def _training_md(runs: list[dict], clean_curve: pd.DataFrame, snapshot: dict) -> str:
    """Runs in training: epochs done, best validation NDCG@10 so far beside clean DiffuRec's at that epoch."""
    def clean_at(epoch):
        hit = clean_curve[clean_curve["epoch"] <= epoch].dropna(subset=["valid_ndcg10"])
        return f"{100 * hit['valid_ndcg10'].iloc[-1]:.3f} (epoch {int(hit['epoch'].iloc[-1])})" if len(hit) else "–"

    rows = []
    for r in runs:
        best = _best_valid(r.get("curve") or [])
        last = next((c for c in reversed(r.get("curve") or []) if c.get("train_loss") is not None), None)
        rows.append([f"{r['model']} (seed {r['seed']})", r["role"], r["epochs_done"],
                     f"{100 * best[0]:.3f} (epoch {best[1]})" if best else "–",
                     clean_at(best[1]) if best else "–",
                     num(last["train_loss"], "{:.3f}") if last else "–",
                     f"{r['hours_left_least']:.1f}–{r['hours_left_most']:.1f}"])
    return (f"### In training (snapshot of {snapshot.get('snapshot', '?')})\n\n"
            + md_table(["Run", "What it is", "Epochs done", "Best validation NDCG@10 % so far",
                        "Clean DiffuRec, validation NDCG@10 % by then", "Last training loss", "Hours left (least–most)"],
                       rows)
            + f"\nFrom the runs' saved states (reports/speed/in-progress-{snapshot.get('profile')}.md), not from "
              "records: no table above "
              "uses them. Validation users differ by recipe (the release's recipe validates on every user, the "
              "clean one on the stopping subset), so the two columns are a pace, not a comparison. Hours left: at "
              "least (no validation improves again) and at most (the epoch cap), at the run's own pace so far.\n\n")


def render_md(cfg: dict, parts: dict, sd_clean: dict, comparable: bool = True) -> str:
    text = ("# Fidelity: does the suite's DiffuRec reproduce the authors'?\n\n"
            "The headline (DiffuRec does not beat SASRec on equal terms) can be dismissed if the suite's DiffuRec is "
            "weaker than the authors'. The model itself was checked against the authors' release "
            "(WHUIR/DiffuRec at f6f70c9) with `bench equivalence` (docs/equivalence.md): loss, every gradient and "
            "the reverse-process scores agree. What remains is how it is trained and selected; these runs switch "
            "the release's recipe on, whole and one difference at a time.\n\n")
    for dataset, p in parts.items():
        text += verdict(p["recipes"], dataset, comparable, reference_of(cfg)) + "\n\n"
    for dataset, p in parts.items():
        title = dataset_title(dataset)
        text += f"## {title}\n\n### DiffuRec under each recipe (test, %, mean ± sample SD over seeds; ratio to the paper)\n\n"
        text += _recipe_md(p["recipes"]) + "\n"
        text += "".join(f"- `{r}`: {cfg['recipes'][r].get('text', '')}; this profile's runs: "
                        f"{p['schedules'].get(r, '')}\n" for r in p["recipes"]["recipe"].unique()) + "\n"
        missing = [r for r in recipes_of(cfg) if r not in set(p["recipes"]["recipe"])]
        if missing:
            text += (f"Not finished yet: {', '.join(f'`{r}`' for r in missing)} (see reports/speed/campaign-full.md "
                     "for its place in the queue and its projected hours"
                     + ("; the runs in training are below" if p.get("training") else "") + ").\n\n")
        if p.get("training"):
            text += _training_md(p["training"], p["clean_curve"], p["snapshot"])
        if len(p["causes"]):
            sd = sd_clean.get(dataset)
            text += ("### Release differences against clean DiffuRec of the same seed (one at a time, then together)\n\n"
                     + _cause_md(p["causes"]) +
                     "\nΔ: cause run − clean DiffuRec, per user, on the same users; interval: paired t over "
                     "users (conditional on the two trained models). Share of the gap closed: Δ over (paper − clean). "
                     "Run − SASRec: the same paired interval against the clean SASRec of the same seeds, whether "
                     "the change lifts DiffuRec past it (> 0)"
                     + (f". For scale, clean DiffuRec's NDCG@10 varies by {sd:.3f} points (sample SD) from seed to "
                        "seed." if sd is not None and np.isfinite(sd) else ".") + "\n\n")
        else:
            text += "No single-cause run has finished on this dataset yet.\n\n"
        if len(p["versus"]):
            text += ("### DiffuRec against SASRec under each recipe\n\n" + _versus_md(p["versus"]) +
                     "\nΔ > 0: DiffuRec better (seed means, users both ranked). The headline test (two-level "
                     "bootstrap over seeds and users, docs/statistics.md) gives the interval, p (not adjusted: "
                     "this report's comparisons are no Holm family) and P(a new DiffuRec run beats a new SASRec "
                     "run); the last column conditions on the trained models. Each recipe's DiffuRec meets the "
                     "SASRec trained under the same schedule and selection rule (the profile's "
                     "`fidelity.recipes`).\n\n")
        if p["curves"]:
            text += (f"### Curves\n\n![validation and training curves](figures/fidelity_curves_{dataset}.png)\n\n")
    text += ("Reference values: the paper's Table 2 (bench/paper_tables/table2.csv); the public reruns of the release "
             "as quoted in issue 25 (bench/paper_tables/reruns.csv; no primary source on file)."
             + (f" {cfg['note'].strip()}" if cfg.get("note") else "") + "\n")
    return text


# =========================================================================== curves
def curve_frame(cfg: dict, col: Collected, dataset: str, training: list | None = None) -> pd.DataFrame:
    """(model, seed, epoch, train_loss, valid_ndcg10, chosen, in_training) of the recipes' DiffuRec and the
    causes' runs: the records', then those of ``training`` (snapshot runs, ``training_runs``) that have none."""
    wanted = {d for d, _ in recipes_of(cfg).values()} | set(cfg.get("causes") or {})
    rows = []
    done = {(r["model"], r.get("seed")) for r in col.ok_records if r["dataset"] == dataset}
    for r in training or []:
        if r["model"] not in wanted or (r["model"], r["seed"]) in done:
            continue
        rows += [{"model": r["model"], "seed": r["seed"], "epoch": int(c["epoch"]), "train_loss": c.get("train_loss"),
                  "valid_ndcg10": c.get("valid_ndcg10"), "chosen": False, "in_training": True}
                 for c in r.get("curve") or []]
    for r in col.ok_records:
        if r["dataset"] != dataset or r["model"] not in wanted:
            continue
        best = (r.get("checkpoint") or {}).get("best_epoch")
        for c in r.get("curve") or []:
            valid = (c.get("valid") or {}).get("NDCG@10")
            rows.append({"model": r["model"], "seed": r.get("seed"), "epoch": int(c["epoch"]) + 1,
                         "train_loss": c.get("train_loss"), "valid_ndcg10": valid,
                         "chosen": best is not None and int(c["epoch"]) == int(best), "in_training": False})
    return pd.DataFrame(rows, columns=["model", "seed", "epoch", "train_loss", "valid_ndcg10", "chosen", "in_training"])


def draw_curves(frame: pd.DataFrame, dataset: str, first: str = ""):
    """Left: validation NDCG@10 per epoch (the chosen checkpoint ringed); right: training loss.
    ``first``: the reference recipe's model, drawn first (its colour stays put as runs land)."""
    fig, axes = new_fig(2.4, 1, 2)
    names = sorted(frame["model"].unique(), key=lambda m: (m != first, m))
    palette = colors(names)
    for name in names:
        g = frame[(frame["model"] == name) & (frame["seed"] == frame[frame["model"] == name]["seed"].min())]
        v = g.dropna(subset=["valid_ndcg10"])
        live = bool(g["in_training"].any())  # a run still training: dashed, so it is not read as finished
        style_ = {"linestyle": "--"} if live else {}
        axes[0, 0].plot(v["epoch"], 100 * v["valid_ndcg10"], marker=".", ms=3, color=palette[name],
                        label=name + (" (in training)" if live else ""), **style_)
        chosen = v[v["chosen"]]
        axes[0, 0].scatter(chosen["epoch"], 100 * chosen["valid_ndcg10"], s=30, facecolors="none",
                           edgecolors=palette[name])
        loss = g.dropna(subset=["train_loss"])
        axes[0, 1].plot(loss["epoch"], loss["train_loss"], color=palette[name], **style_)
    axes[0, 0].set(xlabel="epoch", ylabel="validation NDCG@10 (%)", title="validation (○ chosen checkpoint)")
    axes[0, 1].set(xlabel="epoch", ylabel="training loss", title="training loss", yscale="log")
    for ax in axes[0]:
        ax.grid(linewidth=0.3, alpha=0.5)
    axes[0, 0].legend(fontsize=5, loc="lower right")
    fig.suptitle(f"{dataset_title(dataset)}: DiffuRec recipes, seed of each run with the lowest number")
    return fig


def fidelity_curves(ctx: Context, dataset: str) -> list:
    """The fidelity report's figure: validation and training curves of each recipe and cause."""
    if not ctx.fidelity.get("recipes"):
        return []
    frame = curve_frame(ctx.fidelity, ctx.col, dataset, training_runs(ctx.fidelity, ctx.in_training, dataset))
    if frame.empty or frame["model"].nunique() < 2:
        return [Missing(f"Fidelity curves ({dataset_title(dataset)}): fewer than two DiffuRec recipes with curves")]
    first = recipes_of(ctx.fidelity)[reference_of(ctx.fidelity)][0]
    return [Drawn("fidelity", dataset, f"fidelity_curves_{dataset}",
                  "validation and training curves of DiffuRec's recipes (fidelity.md)",
                  draw_curves(frame, dataset, first))]


# =========================================================================== the table function
def fidelity(ctx: Context) -> list[Table]:
    """``fidelity.md``/``.csv``, for a profile with ``fidelity:`` recipes: written when some dataset has
    the reference recipe's DiffuRec and a run of another recipe or of a single cause."""
    cfg = ctx.fidelity
    if not cfg.get("recipes"):
        return []
    clean = recipes_of(cfg)[reference_of(cfg)]
    needed = fidelity_models(cfg)
    parts, sd_clean = {}, {}
    for dataset in ctx.datasets:
        present = set(ctx.col.runs[ctx.col.runs["dataset"] == dataset]["model"]) if len(ctx.col.runs) else set()
        if clean[0] not in present or not (present & set(needed)) - set(clean):
            continue
        values = {m: seed_values(ctx.col, dataset, m) for m in needed if m in present}
        recipes = recipe_frame(cfg, dataset, values)
        schedules = {}
        for recipe, (model, _) in recipes_of(cfg).items():
            rec = next((r for r in ctx.col.ok_records if r["dataset"] == dataset and r["model"] == model), None)
            if rec:
                q = rec.get("params") or {}
                schedules[recipe] = (f"at most {q.get('epochs')} epochs, validation every {q.get('eval_step', 1)}, "
                                     f"patience {q.get('stopping_step')} validations")
        training = training_runs(cfg, ctx.in_training, dataset)
        curves = curve_frame(cfg, ctx.col, dataset, training)
        clean_curve = curves[(curves["model"] == clean[0]) & (curves["seed"] == 0)]
        parts[dataset] = {"schedules": schedules, "recipes": recipes, "causes": cause_frame(cfg, dataset, values),
                          "versus": versus_sasrec_frame(cfg, dataset, values), "curves": not curves.empty,
                          "training": training, "clean_curve": clean_curve,
                          "snapshot": ctx.in_training or {}}
        nd = recipes[(recipes["recipe"] == reference_of(cfg)) & (recipes["metric"] == "NDCG@10")]
        sd_clean[dataset] = float(nd["sd_pct"].iloc[0]) if len(nd) else None
    if not parts:
        return []
    csv = pd.concat([p["recipes"].assign(part="recipe") for p in parts.values()]
                    + [p["causes"].assign(part="cause") for p in parts.values()]
                    + [p["versus"].assign(part="versus_sasrec") for p in parts.values()], ignore_index=True)
    profiles = {r.get("profile") for r in ctx.col.ok_records}
    comparable = bool(profiles) and profiles <= set(COMPARABLE_PROFILES)
    return [Table("Fidelity: DiffuRec as its authors train it", "fidelity",
                  render_md(cfg, parts, sd_clean, comparable), csv)]
