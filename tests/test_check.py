"""bench check / bench reproduce: a tiny real store passes; corruption, staleness and missing
runs are caught and named; every claim gets a verdict or a reason; reruns are identical."""
import json
import shutil

import numpy as np
import pytest
import yaml

from bench import audit, cli, store
from conftest import needs_data

TINY = {
    "description": "check test", "protocol": "clean", "datasets": ["beauty"], "models": ["GRU4Rec", "SASRec"],
    "seeds": [0, 1], "max_users": 60, "max_train_prefixes": 3,
    "train": {"epochs": 1, "stopping_step": 1, "eval_step": 1, "train_batch_size": 128, "eval_batch_size": 256},
    "determinism": {"models": ["GRU4Rec"], "dataset": "beauty", "seed": 0, "max_users": 60, "epochs": 1},
}


def run_cli(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """(profile YAML, results dir) of the tiny grid, run once for the module."""
    from conftest import AVAILABLE

    if "beauty" not in AVAILABLE:
        pytest.skip("released Beauty split not found")
    root = tmp_path_factory.mktemp("check")
    mp = pytest.MonkeyPatch()
    mp.setenv("BENCH_CACHE_DIR", str(root / "cache"))
    prof = root / "tiny.yaml"
    prof.write_text(yaml.safe_dump(TINY))
    from bench.grid import run_grid

    assert run_grid(str(prof), root / "results") == []
    yield prof, root / "results"
    mp.undo()


@pytest.fixture
def store_copy(tiny_store, tmp_path, monkeypatch):
    prof, results = tiny_store
    monkeypatch.setenv("BENCH_CACHE_DIR", str(results.parent / "cache"))
    shutil.copytree(results, tmp_path / "results")
    return prof, tmp_path / "results", tmp_path / "reports"


def audit_of(reports):
    return (reports / "tiny" / "audit.md").read_text(), json.loads((reports / "tiny" / "audit.json").read_text())


@needs_data
def test_check_passes_on_a_fresh_store(store_copy, capsys):
    prof, results, reports = store_copy
    code, out = run_cli(["check", "--profile", str(prof), "--results-dir", str(results),
                         "--reports-dir", str(reports)], capsys)
    assert code == 0, out
    md, js = audit_of(reports)
    assert js["integrity"]["passed"] and js["integrity"]["n_checked"] == 4 and not js["integrity"]["missing_runs"]
    assert js["determinism"]["status"] == "identical"
    assert js["determinism"]["runs"][0]["users_changed_any"] == 0
    assert "not run in this profile" in js["protocol_sensitivity"]["status"]
    assert {c["verdict"] for c in js["claims"]} <= set(audit.VERDICTS) and all(c["reason"] for c in js["claims"])
    assert js["environment"]["flagged"] == []
    for heading in ("## 1. Integrity", "## 2. Determinism", "## 3. Protocol sensitivity", "## 4. Claims",
                    "## 5. Environment"):
        assert heading in md


def _edit_record(folder, change):
    record = json.loads((folder / "record.json").read_text())
    change(record)
    (folder / "record.json").write_text(json.dumps(record))


def corrupt_metric(results, prof):
    _edit_record(store.run_dir(results, "tiny", "beauty", "SASRec", 1),
                 lambda r: r["metrics"]["test"].__setitem__("NDCG@10", r["metrics"]["test"]["NDCG@10"] + 0.001))
    return "beauty/SASRec/seed-1", "metrics.test.NDCG@10"


def corrupt_rank(results, prof):
    folder = store.run_dir(results, "tiny", "beauty", "GRU4Rec", 0)
    ranks = store.read_ranks(folder)
    worst = int(np.argmax(ranks["test"]))
    ranks["test"][worst] = 0  # a miss becomes a hit: HR@5 changes
    store.write_run(folder, json.loads((folder / "record.json").read_text()), ranks)
    return "beauty/GRU4Rec/seed-0", "from ranks.npz"


def corrupt_rank_silently(results, prof):
    """A record carrying ranks_sha256; one rank far outside the top 20 moves by one: no metric changes."""
    folder = store.run_dir(results, "tiny", "beauty", "SASRec", 0)
    ranks = store.read_ranks(folder)
    record = json.loads((folder / "record.json").read_text())
    record["ranks_sha256"] = audit.ranks_digest(ranks)
    ranks["test"][int(np.argmax(ranks["test"]))] -= 1
    store.write_run(folder, record, ranks)
    return "beauty/SASRec/seed-0", "ranks_sha256"


def corrupt_params(results, prof):
    _edit_record(store.run_dir(results, "tiny", "beauty", "GRU4Rec", 1),
                 lambda r: r["params"].__setitem__("hidden_size", 7))
    return "beauty/GRU4Rec/seed-1", "config_hash does not match"


def stale_profile(results, prof):
    changed = {**TINY, "train": {**TINY["train"], "train_batch_size": 64}}
    prof.write_text(yaml.safe_dump(changed))  # the store's copy of the profile, not the module's
    return "beauty/SASRec/seed-0", "params.train_batch_size: now 64, recorded 128"


@needs_data
@pytest.mark.parametrize("corrupt", [corrupt_metric, corrupt_rank, corrupt_rank_silently, corrupt_params,
                                     stale_profile])
def test_corruption_is_caught_and_named(store_copy, capsys, corrupt, tmp_path):
    prof, results, reports = store_copy
    prof_copy = tmp_path / "tiny.yaml"
    shutil.copy(prof, prof_copy)
    run, phrase = corrupt(results, prof_copy)
    code, out = run_cli(["check", "--profile", str(prof_copy), "--results-dir", str(results),
                         "--reports-dir", str(reports), "--skip-determinism"], capsys)
    assert code == 1
    md, js = audit_of(reports)
    assert "**Integrity: FAIL**" in md
    bad = [c for c in js["integrity"]["records"] if c["problems"]]
    assert run in [c["run"] for c in bad]
    section = md.split("### Records failing the check")[1].split("###")[0]
    assert any(run in line and phrase in line for line in section.splitlines()), section


@needs_data
def test_missing_and_failed_runs_are_listed(store_copy, capsys):
    prof, results, reports = store_copy
    shutil.rmtree(store.run_dir(results, "tiny", "beauty", "SASRec", 1))
    failed = store.run_dir(results, "tiny", "beauty", "GRU4Rec", 1)
    _edit_record(failed, lambda r: r.update(status="failed", error={"type": "RuntimeError", "message": "boom"}))
    code, _ = run_cli(["check", "--profile", str(prof), "--results-dir", str(results),
                       "--reports-dir", str(reports), "--skip-determinism"], capsys)
    assert code == 0  # missing and failed runs are listed, they are not integrity failures
    md, js = audit_of(reports)
    assert [m["run"] for m in js["integrity"]["missing_runs"]] == ["beauty/SASRec/seed-1"]
    assert [f["run"] for f in js["integrity"]["failed_runs"]] == ["beauty/GRU4Rec/seed-1"]
    missing = md.split("### Missing runs")[1].split("###")[0]
    assert "beauty/SASRec/seed-1" in missing and "not run" in missing
    assert "RuntimeError: boom" in md.split("### Failed runs")[1]


@needs_data
def test_reproduce_is_identical_for_a_deterministic_model(store_copy, capsys):
    prof, results, _ = store_copy
    folder = store.run_dir(results, "tiny", "beauty", "SASRec", 0)
    before = sorted(p.name for p in folder.parent.parent.rglob("*"))
    code, out = run_cli(["reproduce", str(folder), "--profile", str(prof)], capsys)
    assert code == 0 and "IDENTICAL" in out and "test 0, valid 0" in out
    assert sorted(p.name for p in folder.parent.parent.rglob("*")) == before  # nothing written into the store
    ranks = store.read_ranks(folder)
    ranks["valid"][:3] += 1
    store.write_run(folder, json.loads((folder / "record.json").read_text()), ranks)
    code, out = run_cli(["reproduce", "tiny/beauty/SASRec/seed-0", "--results-dir", str(results),
                         "--profile", str(prof)], capsys)
    assert code == 1 and "DIFFERENT" in out and "valid 3" in out


# --------------------------------------------------------------------------- claims on a fake store
N_USERS = 300


def _fake(root, dataset, model, seed, k, base=None, variant=None, params=None, protocol="clean",
          best_epoch=3, epochs_run=6):
    """A record + ranks whose ranks are floor(u * k): smaller k = better, for every user alike."""
    rng = np.random.default_rng(7)  # same users, same u for every model: comparisons are monotone
    u = rng.random(N_USERS)
    hist = rng.integers(2, 60, N_USERS).astype(np.int32)
    head = rng.random(N_USERS) < 0.3
    jitter = np.random.default_rng(seed).normal(0, 0.01, N_USERS)
    test = np.floor(np.clip(u + jitter, 0, 0.999) * k).astype(np.int32)
    ranks = {"users": np.arange(N_USERS), "test": test, "valid": test.copy(), "hist_len": hist,
             "test_item": np.arange(N_USERS, dtype=np.int32) + 1, "test_is_head": head}
    if protocol == "paper":
        for m in store.METRICS:
            ranks[f"test@{m}"] = test
    record = {"status": "ok", "profile": "fake", "dataset": dataset, "model": model, "base_model": base or model,
              "seed": seed, "protocol": protocol, "params": {"epochs": 20, **(params or {})},
              "variant": {"name": model, "params": variant} if variant else None,
              "metrics": {"test": store.metrics_from_ranks(test), "valid": store.metrics_from_ranks(test)},
              "checkpoint": {"best_epoch": best_epoch}, "timing": {"epochs_run": epochs_run},
              "curve": [{"epoch": e, "train_loss": 5 / (e + 1)} for e in range(epochs_run)],
              "env": {}, "data": {"sha256": "0" * 64}}
    store.write_run(store.run_dir(root, "fake", dataset, model, seed), record, ranks)


DIFFUREC = {"approximator": "transformer", "rounding": "inner_product", "noise_schedule": "truncated_linear",
            "lambda_scale": 0.001, "causal": True}


def fake_store(root):
    for seed in (0, 1, 2):
        for dataset in ("beauty", "ml-1m"):
            _fake(root, dataset, "GRU4Rec", seed, 120, best_epoch=8, epochs_run=11)
            _fake(root, dataset, "SASRec", seed, 60, best_epoch=9, epochs_run=12)
            _fake(root, dataset, "DiffuRec", seed, 30, params=DIFFUREC)
            variants = {"DiffuRec-gru": ({"approximator": "gru"}, 45),
                        "DiffuRec-rstar": ({"rounding": "neg_sq_distance"}, 200),
                        "DiffuRec-linear": ({"noise_schedule": "linear"}, 35),
                        "DiffuRec-d0.1": ({"lambda_scale": 0.1}, 80)}
            for name, (change, k) in variants.items():
                _fake(root, dataset, name, seed, k, base="DiffuRec", variant=change, params={**DIFFUREC, **change})
            _fake(root, dataset, "DiffuRec-paper", seed, 25, base="DiffuRec", variant={"protocol": "paper"},
                  params={**DIFFUREC, "causal": False}, protocol="paper")
            _fake(root, dataset, "SASRec-paper", seed, 55, base="SASRec", variant={"protocol": "paper"},
                  protocol="paper")


def test_every_claim_gets_a_verdict_on_a_fake_store(tmp_path):
    fake_store(tmp_path)
    claims = audit.evaluate_claims(store.load_records(tmp_path, "fake"))
    spec = audit.load_claims()
    assert [c["id"] for c in claims] == [c["id"] for c in spec["claims"]]
    by_id = {c["id"]: c for c in claims}
    for c in claims:
        assert c["verdict"] in audit.VERDICTS and c["reason"], c
    # built so that DiffuRec beats everything, every variant, in every group, and converges first
    for cid in ("T2-beats-all", "F3-truncated-linear", "F5-delta-0.001", "T3-transformer-over-gru",
                "T3-inner-product-over-rstar", "F8-head-and-tail", "F9-every-length", "F10-convergence-ml1m"):
        assert by_id[cid]["verdict"] == "holds", by_id[cid]
    assert "no runs on toys, steam" in by_id["T2-beats-all"]["reason"]
    assert "absent: Caser" in by_id["T2-beats-all"]["reason"]
    rows = by_id["T2-beats-all"]["evidence"]
    assert len(rows) == 12 and all(0 <= r["hb_p_holm"] <= 1 and r["family"] == "table2" for r in rows)
    assert {r["group"] for r in by_id["F8-head-and-tail"]["evidence"]} == {"head", "long-tail"}
    assert len({r["group"] for r in by_id["F9-every-length"]["evidence"]}) == 5
    # claims no report tests run the headline test on their own cells (issue 26): a p and P(A > B) per cell
    for cid in ("F3-truncated-linear", "F5-delta-0.001", "F8-head-and-tail", "F9-every-length"):
        ev = by_id[cid]["evidence"]
        assert ev and all(0 <= r["hb_p"] <= r["hb_p_holm"] <= 1 and 0 <= r["p_a_beats_b"] <= 1 for r in ev), cid
        assert "hb_p_holm" in by_id[cid]["columns"] and "paired_p_holm" not in by_id[cid]["columns"]
    # a group cell tests only the group's users: the head cell and the long-tail cell differ
    f8 = {(r["group"], r["metric"]): r["hb_p"] for r in by_id["F8-head-and-tail"]["evidence"]}
    assert f8[("head", "HR@10")] != f8[("long-tail", "HR@10")]

    prot = audit.protocol_sensitivity(audit.ResultsView(store.load_records(tmp_path, "fake")))
    assert prot["status"] == "ok" and {r["base_model"] for r in prot["rows"]} == {"DiffuRec", "SASRec"}
    assert prot["params_changed"]["DiffuRec"]["causal"] == {
        "clean": True, "paper": False, "meaning": audit.yaml_comment("DiffuRec", "causal")}
    assert all(r["paper"] > r["clean"] for r in prot["rows"] if r["metric"] == "HR@20")
    assert all(r["hb_ci_low"] <= r["paper"] - r["clean"] <= r["hb_ci_high"] and 0 <= r["hb_p"] <= r["hb_p_holm"] <= 1
               for r in prot["rows"])


def test_claims_on_an_empty_store_are_not_testable_with_reasons(tmp_path):
    claims = audit.evaluate_claims([])
    assert claims and all(c["verdict"] == "not testable" and c["reason"] for c in claims)


def test_convergence_is_not_testable_when_diffurec_hits_the_epoch_cap(tmp_path):
    for seed in (0, 1):
        _fake(tmp_path, "ml-1m", "SASRec", seed, 60, best_epoch=5, epochs_run=8)
        _fake(tmp_path, "ml-1m", "DiffuRec", seed, 30, best_epoch=19, epochs_run=20)
    res = audit.evaluate_claims(store.load_records(tmp_path, "fake"))
    conv = next(c for c in res if c["id"] == "F10-convergence-ml1m")
    assert conv["verdict"] == "not testable" and "epoch cap" in conv["reason"]


@needs_data
def test_reproduce_runs_with_the_recorded_thread_count(store_copy, monkeypatch):
    import torch

    import bench.runner
    from bench.audit import reproduce

    prof, results, _ = store_copy
    folder = store.run_dir(results, "tiny", "beauty", "SASRec", 0)
    recorded = json.loads((folder / "record.json").read_text())["env"]["threads"]
    _edit_record(folder, lambda r: r["env"].update(threads=recorded + 1))
    seen, real_run = [], bench.runner.run_entry

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real_run(*args, **kwargs)

    monkeypatch.setattr(bench.runner, "run_entry", spy)
    before = torch.get_num_threads()
    res = reproduce(folder, profile_name=str(prof))
    assert seen == [recorded + 1] and res["threads"] == recorded + 1
    assert torch.get_num_threads() == before
