"""The `full` campaign's queue (issue 29): full.yaml's `priority:` puts issue 25's runs first, run by run,
then ML-1M seed 0, then the closest baselines over more seeds, then the earlier order."""
import pytest

from bench.profiles import grid, load_profile, prioritised
from conftest import needs_data

# the issue's runs, plus the combination of the two causes that each raised NDCG@10 (DiffuRec-dropout22-bidir),
# right after its parts
ISSUE25 = ["DiffuRec-paper-es", "DiffuRec-embinit", "DiffuRec-dropout22", "DiffuRec-bidir", "DiffuRec-dropout22-bidir",
           "DiffuRec-padattn", "SASRec-paper", "DiffuRec-paper"]
BASE = ["ACVAE", "BERT4Rec", "Caser", "ComiRec", "DiffuRec", "GRU4Rec", "SASRec", "STOSA", "SVAE", "TiMiRec"]


def expected_head() -> list[tuple]:
    """(model, dataset, seed) of the campaign's head, written from the issue's words, not from the YAML."""
    head = [(m, "beauty", 0) for m in ISSUE25] + [(m, "toys", 0) for m in ISSUE25]
    head += [("DiffuRec", "ml-1m", 0), ("SASRec", "ml-1m", 0)]
    head += [(m, "ml-1m", 0) for m in BASE if m not in ("DiffuRec", "SASRec")]
    return head


@pytest.fixture(scope="module")
def order():
    profile = load_profile("full")
    return [(e.model, e.dataset, e.seed) for e in prioritised(profile, grid(profile))]


def test_issue25_runs_then_ml1m_seed0_headline_pair_first(order):
    head = expected_head()
    got = order[:len(head)]
    # within the other eight ML-1M models the grid's (alphabetical) model order is kept
    k = 2 * len(ISSUE25) + 2
    assert got[:k] == head[:k]
    assert sorted(got[k:]) == sorted(head[k:]) and len(got) >= len(head)


def test_then_closest_baselines_over_seeds_then_ml1m_pair_then_the_old_rules(order):
    n = len(expected_head())
    nxt = order[n:n + 12]
    assert {(m, d, s) for m, d, s in nxt} == {(m, d, s) for m in ("ACVAE", "GRU4Rec", "TiMiRec")
                                              for d in ("beauty", "toys") for s in (1, 2)}
    assert order[n + 12:n + 16] == [("DiffuRec", "ml-1m", 1), ("SASRec", "ml-1m", 1),
                                    ("DiffuRec", "ml-1m", 2), ("SASRec", "ml-1m", 2)]
    # the old first rule follows: Table 2's Beauty and Toys seed 0 of the base models
    rest = order[n + 16:]
    assert rest[:len(BASE) * 2] == [(m, d, 0) for d in ("beauty", "toys") for m in BASE]


def test_every_grid_run_is_queued_once(order):
    profile = load_profile("full")
    assert sorted(order) == sorted((e.model, e.dataset, e.seed) for e in grid(profile))
    assert len(set(order)) == len(order)


@needs_data
def test_grid_list_skips_finished_runs_and_keeps_the_order(tmp_path, capsys):
    """`bench grid --profile full --list` with two finished runs: the others, in the queue's order."""
    from bench import cli, store
    from conftest import AVAILABLE

    if not {"beauty", "toys", "ml-1m"} <= set(AVAILABLE):
        pytest.skip("needs Beauty, Toys and ML-1M")
    for model, dataset in (("DiffuRec-paper-es", "beauty"), ("SASRec", "ml-1m")):
        store.write_run(store.run_dir(tmp_path, "full", dataset, model, 0),
                        {"status": "ok", "dataset": dataset, "model": model}, None)
    assert cli.main(["grid", "--profile", "full", "--list", "--results-dir", str(tmp_path)]) == 0
    lines = [tuple(line.split()) for line in capsys.readouterr().out.splitlines()]
    want = [(m, d, str(s)) for m, d, s in expected_head() if (m, d) not in
            {("DiffuRec-paper-es", "beauty"), ("SASRec", "ml-1m")}]
    assert lines[:14] == want[:14]
    assert ("SASRec", "ml-1m", "0") not in lines and ("SASRec", "ml-1m", "1") in lines
