"""Every registered table and figure on a small fake store; re-rendering writes identical bytes.

A table or figure added to ``bench.report.registry`` is picked up here without editing this file.
"""
import os

import pandas as pd
import pytest

import datasets.prepare
from bench import store
from bench.fmt import REPO_ROOT
from bench.report import render
from bench.report.collect import collect
from bench.profiles import load_profile
from bench.report.context import Context, Drawn, Missing, Table
from bench.report.fidelity import fidelity_models
from bench.report.registry import FIGURES, TABLES
from bench.report.tables import table1
from test_report import DIFFUREC_PARAMS, PROFILE, build_store, write_fake_run


def build_full_store(root):
    """The report tests' store plus what the other tables and figures need: a tuning run, a δ variant, a control."""
    build_store(root)
    write_fake_run(root, "beauty", "SASRec-tune-dropout=0.2", 0, (32, 20, 20), base_model="SASRec",
                   variant={"name": "SASRec-tune-dropout=0.2", "params": {"dropout": 0.2}}, params={"dropout": 0.2})
    for seed in range(2):
        write_fake_run(root, "beauty", "DiffuRec-delta1", seed, (40 + seed, 30, 30), base_model="DiffuRec",
                       variant={"name": "DiffuRec-delta1", "params": {"lambda_scale": 1.0}},
                       params={**DIFFUREC_PARAMS, "lambda_scale": 1.0})
        write_fake_run(root, "beauty", "DiffuRec-nodiff", seed, (45 + seed, 30, 30), base_model="DiffuRec",
                       variant={"name": "DiffuRec-nodiff", "params": {"lambda_scale": 0.0}},
                       params={**DIFFUREC_PARAMS, "lambda_scale": 0.0})
    # the fidelity report: a run of the release's recipe and one single-cause run
    for name, params in (("DiffuRec-paper-es", {"protocol": "paper"}), ("DiffuRec-bidir", {"causal": False})):
        write_fake_run(root, "beauty", name, 0, (50, 30, 30), base_model="DiffuRec",
                       variant={"name": name, "params": params}, params={**DIFFUREC_PARAMS, **params})


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry") / "results"
    build_full_store(root)
    return root


@pytest.fixture(scope="module")
def ctx(results):
    controls = {"DiffuRec-nodiff": "no diffusion"}
    fidelity = load_profile("full")["fidelity"]
    return Context(collect(results, PROFILE, [*controls, *fidelity_models(fidelity)]), data_dir=results.parent / "no-data",
                   expected=[("beauty", "SASRec", 0), ("toys", "SASRec", 0)], controls=controls, fidelity=fidelity)


@pytest.mark.parametrize("table_fn", TABLES, ids=lambda f: f.__name__)
def test_every_registered_table_renders(table_fn, ctx):
    tables = table_fn(ctx)
    assert tables, f"{table_fn.__name__} wrote nothing on a store that has its runs"
    for t in tables:
        assert isinstance(t, Table) and t.title and t.stem
        assert t.md is not None and t.md.startswith("# ")
        assert isinstance(t.csv, pd.DataFrame)


def test_table_stems_and_titles_are_unique(ctx):
    tables = [t for fn in TABLES for t in fn(ctx)]
    assert len({t.stem for t in tables}) == len(tables) and len({t.title for t in tables}) == len(tables)


@pytest.mark.parametrize("figure_fn", FIGURES, ids=lambda f: f.__name__)
def test_every_registered_figure_draws_or_says_why(figure_fn, ctx):
    outcomes = [o for dataset in ctx.datasets for o in figure_fn(ctx, dataset)]
    assert all(isinstance(o, (Drawn, Missing)) for o in outcomes)
    drawn = [o for o in outcomes if isinstance(o, Drawn)]
    assert drawn, f"{figure_fn.__name__} drew nothing on a store that has its runs: {outcomes}"
    for o in drawn:
        assert o.stem.endswith(o.dataset) and o.what and o.fig_id


def test_every_table_and_figure_copes_with_an_empty_store(tmp_path):
    empty = Context(collect(tmp_path, "nothing"), data_dir=tmp_path)
    for fn in TABLES:
        assert all(isinstance(t, Table) for t in fn(empty))
    for fn in FIGURES:
        assert all(isinstance(o, Missing) for o in fn(empty, "beauty"))


def test_rendering_twice_writes_identical_files(results, tmp_path):
    expected = [("beauty", "SASRec", 0), ("toys", "GRU4Rec", 5)]
    first = render(results, tmp_path / "a", PROFILE, data_dir=tmp_path, expected=expected)
    second = render(results, tmp_path / "b", PROFILE, data_dir=tmp_path, expected=expected)
    rel = [p.relative_to(tmp_path / "a") for p in first]
    assert rel == [p.relative_to(tmp_path / "b") for p in second]
    assert any(p.suffix == ".pdf" for p in rel) and any(p.suffix == ".png" for p in rel)
    for p in rel:
        assert (tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes(), p
    assert b"/CreationDate" not in next((tmp_path / "a" / p).read_bytes() for p in rel if p.suffix == ".pdf")


def test_table1_names_the_default_data_folder_relative_to_the_repository(ctx, monkeypatch):
    missing = REPO_ROOT.parent / "no-such-data-folder"
    monkeypatch.setattr(datasets.prepare, "DEFAULT_DATA_DIR", missing)
    monkeypatch.delenv("BENCH_DATA_DIR", raising=False)
    status = table1(Context(ctx.col, data_dir=None))[0].csv["status"].iloc[0]
    assert "../no-such-data-folder/" in status and os.fspath(missing) not in status, status



def test_diagnosis_tables_the_named_runs_beside_the_base_run(tmp_path, monkeypatch):
    from bench.report import diagnosis
    from test_report import write_fake_run

    root = tmp_path / "results"
    build_full_store(root)  # GRU4Rec on Beauty lies far above the paper there
    write_fake_run(root, "beauty", "GRU4Rec-bpr", 0, (12, 8, 8), base_model="GRU4Rec",
                   variant={"name": "GRU4Rec-bpr", "params": {"loss_type": "BPR"}}, params={"loss_type": "BPR"})
    notes = tmp_path / "diagnosis.yaml"
    notes.write_text("GRU4Rec:\n  runs: [GRU4Rec-bpr, GRU4Rec-never-run]\n  all: the loss.\n")
    monkeypatch.setattr(diagnosis, "NOTES_FILE", notes)
    [table] = diagnosis.diagnosis(Context(collect(root, PROFILE), data_dir=tmp_path / "no-data"))
    section = table.md.split("## GRU4Rec on Beauty")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in section.splitlines() if line.startswith("| GRU4Rec")}
    assert set(rows) == {"GRU4Rec (base)", "GRU4Rec-bpr"}
    run = store.read_record(store.run_dir(root, PROFILE, "beauty", "GRU4Rec-bpr", 0))
    assert f"| 1 | {100 * run['metrics']['test']['HR@10']:.2f} |" in rows["GRU4Rec-bpr"]
    assert "Not run yet: `GRU4Rec-never-run`." in section and "the loss." in section
    expected = [("beauty", "GRU4Rec", 0), ("beauty", "GRU4Rec-bpr", 0), ("toys", "GRU4Rec-never-run", 0)]
    [table] = diagnosis.diagnosis(Context(collect(root, PROFILE), data_dir=tmp_path / "no-data", expected=expected))
    section = table.md.split("## GRU4Rec on Beauty")[1].split("\n## ")[0]
    assert "Not run yet" not in section  # the grid has it on Toys only
    assert "Not in this profile's grid for Beauty: `GRU4Rec-never-run`." in section


def test_diagnosis_all_text_only_on_the_datasets_it_covers(tmp_path, monkeypatch):
    """An `all` text written from other datasets' runs is not shown where it could state the wrong direction."""
    from bench.report import diagnosis

    root = tmp_path / "results"
    build_full_store(root)
    notes = tmp_path / "diagnosis.yaml"
    monkeypatch.setattr(diagnosis, "NOTES_FILE", notes)
    for covers, shown in (("[toys]", False), ("[beauty, toys]", True)):
        notes.write_text(f"all_covers: {covers}\nGRU4Rec:\n  runs: []\n  all: the loss.\n")
        [table] = diagnosis.diagnosis(Context(collect(root, PROFILE), data_dir=tmp_path / "no-data"))
        section = table.md.split("## GRU4Rec on Beauty")[1].split("\n## ")[0]
        assert ("the loss." in section) is shown and ("*Not yet diagnosed.*" in section) is not shown


def test_diagnosis_runs_table_gives_both_ratios_when_one_metric_is_inside_the_band(tmp_path, monkeypatch):
    """A model out of the band in one metric only still gets the paper ratio of both in its runs table."""
    from bench.report import diagnosis
    from bench.report.gap import gap_frame

    root = tmp_path / "results"
    build_full_store(root)
    col = collect(root, PROFILE)
    gap = gap_frame(col)
    mine = gap[(gap["table"] == "2") & (gap["dataset"] == "beauty") & (gap["model"] == "GRU4Rec")]
    ratio = dict(zip(mine["metric"], mine["ratio"]))
    low, high = sorted((ratio["HR@10"], ratio["NDCG@10"]))
    assert low < high
    monkeypatch.setattr(diagnosis, "BAND", (0.0, (low + high) / 2))  # only the larger ratio lies outside
    notes = tmp_path / "diagnosis.yaml"
    notes.write_text("GRU4Rec:\n  runs: []\n  all: the loss.\n")
    monkeypatch.setattr(diagnosis, "NOTES_FILE", notes)
    monkeypatch.setattr(diagnosis, "_test_runs", lambda *args: [repr(args[3])])  # the paper values it receives
    [table] = diagnosis.diagnosis(Context(col, data_dir=tmp_path / "no-data"))
    section = table.md.split("## GRU4Rec on Beauty")[1].split("\n## ")[0]
    shown = [line for line in section.splitlines() if line.startswith("| HR@10") or line.startswith("| NDCG@10")]
    assert len(shown) == 1  # the cells table: only the metric outside the band
    assert "'HR@10'" in section and "'NDCG@10'" in section  # the runs table: both


def test_diagnosis_shows_loss_type_only_for_models_that_read_it():
    from bench.report.diagnosis import _used

    assert _used("SASRec", "loss_type") and _used("GRU4Rec", "loss_type")
    assert not any(_used(m, "loss_type") for m in ("STOSA", "SVAE", "ACVAE"))  # their own objectives
    assert _used("STOSA", "hidden_size")


def test_fig5_puts_the_no_diffusion_control_first(ctx):
    """δ = 0 (DiffuRec-nodiff) is drawn as the first bar, before the paper's δ values."""
    from bench.report.figures.settings import fig5_delta
    drawn = [o for o in fig5_delta(ctx, "beauty") if isinstance(o, Drawn)]
    assert drawn and drawn[0].what == "DiffuRec under lambda_scale = 0 (control: no diffusion), 0.001, 1.0"
