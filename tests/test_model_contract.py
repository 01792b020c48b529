"""One contract for every model in models/: a new baseline is covered the moment its
two files exist (bench.zoo.discover finds them)."""
import numpy as np
import pytest
import torch

from bench import engine
from bench.store import metrics_from_ranks
from bench.synthetic import next_item_rule
from bench.zoo import build_model, discover, resolve_params

SPECS = discover()
NAMES = sorted(spec.name for spec in SPECS.values())
MAX_LEN = 12
FAST = {"MAX_ITEM_LIST_LENGTH": MAX_LEN, "train_batch_size": 64, "eval_batch_size": 256}


def make(name, seqs, **extra):
    spec = SPECS[name.lower()]
    params = resolve_params(spec, FAST, extra)
    params["MAX_ITEM_LIST_LENGTH"] = min(MAX_LEN, spec.params.get("MAX_ITEM_LIST_LENGTH", MAX_LEN))
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    return model, params


def width_of(model, params):
    return params["MAX_ITEM_LIST_LENGTH"] if getattr(model, "fixed_length_input", False) else None


@pytest.fixture(scope="module")
def seqs():
    return next_item_rule(300, 50, min_len=5, max_len=12, seed=0)


def batch_of(seqs, params, model, n=32):
    inst = engine.training_instances(seqs, params["MAX_ITEM_LIST_LENGTH"])
    return engine.make_batch(inst, np.arange(n), width_of(model, params))


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_and_reaches_every_parameter(name, seqs):
    torch.manual_seed(0)
    model, params = make(name, seqs)
    model.train()
    batch = batch_of(seqs, params, model)
    stages = [0, 10**6] if hasattr(model, "set_epoch") else [None]
    for stage in stages:  # multi-stage objectives: every parameter trains in some stage
        if stage is not None:
            model.set_epoch(stage)
        loss = model.calculate_loss(batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
    silent = [n for n, p in model.named_parameters()
              if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not silent, f"no gradient reaches {silent}"


@pytest.mark.parametrize("name", NAMES)
def test_full_sort_predict_shape_and_padding_never_first(name, seqs):
    torch.manual_seed(0)
    model, params = make(name, seqs)
    model.eval()
    batch = batch_of(seqs, params, model)
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        single = model.predict(batch)
    assert scores.shape == (32, seqs.n_items)
    assert single.shape == (32,)
    inst = engine.evaluation_instances(seqs, params["MAX_ITEM_LIST_LENGTH"], "test")
    ranks = engine.rank_targets(model, inst, 64, width_of(model, params))
    assert ranks.min() >= 0 and ranks.max() <= seqs.n_items - 2  # 0-based among real items
    scores[:, 0] = -float("inf")  # what the harness does before ranking
    assert (scores.argmax(1) != 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_a_seed(name, seqs):
    outputs = []
    for _ in range(2):
        torch.manual_seed(7)
        model, params = make(name, seqs)
        model.train()
        batch = batch_of(seqs, params, model)
        loss = model.calculate_loss(batch)
        model.eval()
        with torch.no_grad():
            outputs.append((loss.item(), model.full_sort_predict(batch)))
    assert outputs[0][0] == outputs[1][0]
    assert torch.equal(outputs[0][1], outputs[1][1])


WIDTH_TOL = {"atol": 1e-5, "rtol": 1e-4}


def width_gap(model, inst, idx: np.ndarray, width: int) -> float:
    """Largest |score difference| (eval mode) for the users ``idx`` between batch widths, beyond the
    tolerance (> 0 fails): the batch trimmed to its longest history (what the harness passes), the
    batch padded to ``width``, and, for a model that draws nothing at inference, each user alone at its
    own length.  A model that draws noise at inference (DiffuRec's reverse process) gets the same
    draws at both widths of the same batch; alone, a user would get other draws."""
    def scores(rows, w=None, seed=3):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model.full_sort_predict(engine.make_batch(inst, rows, w))[:, 1:]

    trimmed, wide = scores(idx), scores(idx, width)
    others = [wide]
    if torch.equal(trimmed, scores(idx, seed=4)):  # deterministic at inference
        others.append(torch.cat([scores(idx[i:i + 1]) for i in range(len(idx))]))
    gap = -np.inf
    for other in others:
        excess = (other - trimmed).abs() - (WIDTH_TOL["atol"] + WIDTH_TOL["rtol"] * trimmed.abs())
        gap = max(gap, float(excess.max()))
    return gap


def short_users(inst, n=8) -> np.ndarray:
    """``n`` users with the shortest histories, so the trimmed width lies well below MAX_LEN."""
    return np.argsort(inst.end - inst.start, kind="stable")[:n]


@pytest.mark.parametrize("name", NAMES)
def test_scores_do_not_depend_on_the_batch_width(name, seqs):
    """The harness trims every batch to its longest history; a user's scores must not change with
    that width (a model mixing every position, padding included, fails).  The default config of
    each model; DiffuRec's ``attention_padding: release`` depends on the width on purpose
    (tests/test_release_switches.py)."""
    torch.manual_seed(0)
    model, params = make(name, seqs)
    if getattr(model, "fixed_length_input", False):
        pytest.skip(f"{name} sets fixed_length_input: the harness always passes the full width")
    model.eval()
    inst = engine.evaluation_instances(seqs, params["MAX_ITEM_LIST_LENGTH"], "test")
    idx = short_users(inst)
    assert int((inst.end - inst.start)[idx].max()) < params["MAX_ITEM_LIST_LENGTH"]
    gap = width_gap(model, inst, idx, params["MAX_ITEM_LIST_LENGTH"])
    assert gap <= 0, f"{name}: scores move with the batch width (by {gap:.2e} beyond tolerance)"


def test_the_width_check_catches_a_model_that_pools_the_padding(seqs):
    """The check can fail: GRU4Rec made to read the state at the last column (padding included)."""
    torch.manual_seed(0)
    model, params = make("GRU4Rec", seqs)
    model.eval()
    real_forward = model.forward
    model.forward = lambda item_seq, item_seq_len: real_forward(item_seq, torch.full_like(item_seq_len,
                                                                                          item_seq.shape[1]))
    inst = engine.evaluation_instances(seqs, params["MAX_ITEM_LIST_LENGTH"], "test")
    assert width_gap(model, inst, short_users(inst), params["MAX_ITEM_LIST_LENGTH"]) > 0


@pytest.mark.parametrize("name", NAMES)
def test_trains_through_recbole_trainer(name, tmp_path):
    from bench.recbole_path import run_recbole_trainer

    small = next_item_rule(60, 20, min_len=5, max_len=10, seed=1)
    spec = SPECS[name.lower()]
    params = resolve_params(spec, FAST)
    params["MAX_ITEM_LIST_LENGTH"] = min(MAX_LEN, spec.params.get("MAX_ITEM_LIST_LENGTH", MAX_LEN))
    torch.manual_seed(0)
    out = run_recbole_trainer(spec.cls, params, small, epochs=1, workdir=tmp_path, max_batches=3)
    assert np.isfinite(out["loss"][0])
    assert 0.0 <= out["test"]["hit@10"] <= 1.0 and "ndcg@20" in out["test"]


def popularity_hr10(seqs) -> float:
    inst = engine.training_instances(seqs, MAX_LEN)
    counts = np.bincount(inst.targets, minlength=seqs.n_items).astype(float)
    counts[0] = -1
    order = np.argsort(-counts, kind="stable")
    rank_of = np.empty_like(order)
    rank_of[order] = np.arange(len(order))
    return float(np.mean(rank_of[seqs.test_items] < 10))


@pytest.mark.parametrize("name", NAMES)
def test_learns_a_next_item_rule_well_above_popularity(name, seqs):
    torch.manual_seed(0)
    model, params = make(name, seqs, learning_rate=5e-3, epochs=12, eval_step=3, stopping_step=2)
    tr = engine.training_instances(seqs, params["MAX_ITEM_LIST_LENGTH"])
    va, te = (engine.evaluation_instances(seqs, params["MAX_ITEM_LIST_LENGTH"], s) for s in ("valid", "test"))
    fit = engine.fit(model, params, tr, va, te, seed=0)
    hr10 = metrics_from_ranks(fit.test_ranks)["HR@10"]
    baseline = popularity_hr10(seqs)
    assert hr10 >= baseline + 0.25, f"{name}: HR@10 {hr10:.3f} vs popularity {baseline:.3f}"
