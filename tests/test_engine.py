"""The fast path computes what RecBole computes: instances, losses, scores, metrics."""
import numpy as np
import pytest
import torch

from bench import engine
from bench.store import METRICS, metrics_from_ranks
from bench.synthetic import next_item_rule
from bench.zoo import build_model, get_spec, resolve_params

TRIMMABLE = ["SASRec", "GRU4Rec", "BERT4Rec"]


def test_training_instances_match_recbole_augmentation(tmp_path):
    from bench.recbole_path import recbole_data

    seqs = next_item_rule(40, 20, min_len=4, max_len=15, seed=3)
    spec = get_spec("SASRec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 6})
    _, dataset, train, _, _ = recbole_data(spec.cls, params, seqs, tmp_path)
    tokens = dataset.field2id_token["item_id"]
    to_ours = np.array([0] + [int(t) for t in tokens[1:]])
    feat = train.dataset.inter_feat
    theirs = sorted(
        (tuple(to_ours[row[:n]]), int(to_ours[t]))
        for row, n, t in zip(feat["item_id_list"].numpy(), feat["item_length"].numpy(), feat["item_id"].numpy())
    )
    inst = engine.training_instances(seqs, 6)
    ours = sorted((tuple(inst.items[s:e]), int(inst.items[e])) for s, e in zip(inst.start, inst.end))
    assert ours == theirs


def test_max_prefixes_keeps_most_recent():
    seqs = next_item_rule(5, 20, min_len=10, max_len=10)
    full = engine.training_instances(seqs, 50)
    capped = engine.training_instances(seqs, 50, max_prefixes=3)
    assert len(full) == 5 * 7 and len(capped) == 15
    most_recent = set((seqs.offsets[1:, None] - 3 - np.arange(3)).ravel().tolist())
    assert set(capped.end.tolist()) == most_recent


def test_epoch_batches_cover_every_instance_once():
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    batches = engine.epoch_batches(lengths, 64, np.random.default_rng(1))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    widths = [lengths[b].max() - lengths[b].min() for b in batches]
    assert np.mean(widths) < 10  # bucketing groups similar lengths


@pytest.mark.parametrize("name", TRIMMABLE)
def test_trimmed_batches_give_same_loss_and_scores(name):
    seqs = next_item_rule(64, 30, min_len=3, max_len=20)
    spec = get_spec(name)
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 20})
    torch.manual_seed(0)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    model.eval()
    inst = engine.training_instances(seqs, 20)
    idx = np.arange(64)
    trimmed, padded = engine.make_batch(inst, idx), engine.make_batch(inst, idx, width=20)
    assert trimmed["item_id_list"].shape[1] < 20
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.calculate_loss(trimmed)
        torch.manual_seed(1)
        b = model.calculate_loss(padded)
        assert torch.allclose(a, b, atol=1e-5)
        assert torch.allclose(model.full_sort_predict(trimmed), model.full_sort_predict(padded), atol=1e-4)


def test_ranks_reproduce_recbole_evaluator():
    """Our HR/NDCG from ranks equal RecBole's evaluator on the same score matrix."""
    from recbole.config import Config
    from recbole.evaluator import Collector, Evaluator
    from recbole.model.sequential_recommender.sasrec import SASRec

    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.normal(size=(300, 101)), dtype=torch.float32)
    scores[:, 0] = -np.inf
    target = torch.tensor(rng.integers(1, 101, size=300))
    config = Config(model=SASRec, dataset="x", config_dict={
        "data_path": "/tmp", "train_neg_sample_args": None, "metrics": ["Hit", "NDCG"], "topk": [5, 10, 20]})
    collector, evaluator = Collector(config), Evaluator(config)
    _, topk_idx = torch.topk(scores, 20, dim=-1)
    pos_matrix = torch.zeros_like(scores, dtype=torch.int)
    pos_matrix[torch.arange(300), target] = 1
    pos_len = pos_matrix.sum(dim=1, keepdim=True)
    pos_idx = torch.gather(pos_matrix, dim=1, index=topk_idx)
    collector.data_struct.update_tensor("rec.topk", torch.cat((pos_idx, pos_len), dim=1))
    theirs = evaluator.evaluate(collector.get_data_struct())
    ours_rank = ((scores >= scores.gather(1, target[:, None])).sum(1) - 1).numpy()
    ours = metrics_from_ranks(ours_rank)
    for metric in METRICS:
        kind, k = metric.split("@")
        key = ("hit" if kind == "HR" else "ndcg") + "@" + k
        assert ours[metric] == pytest.approx(float(theirs[key]), abs=1e-4)


def test_rank_targets_is_pessimistic_on_ties_and_nan():
    class Constant(torch.nn.Module):
        def __init__(self, value):
            super().__init__()
            self.value = value

        def full_sort_predict(self, batch):
            return torch.full((len(batch["item_id"]), 11), self.value)

    seqs = next_item_rule(10, 10)
    inst = engine.evaluation_instances(seqs, 5, "test")
    assert (engine.rank_targets(Constant(1.0), inst, 4) == 9).all()  # 10 items tie: worst rank
    assert (engine.rank_targets(Constant(float("nan")), inst, 4) == 9).all()


def test_nan_loss_stops_with_clear_error():
    seqs = next_item_rule(20, 10)
    spec = get_spec("GRU4Rec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 10, "epochs": 1})
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    with torch.no_grad():
        model.item_embedding.weight.fill_(float("nan"))
    inst = engine.training_instances(seqs, 10)
    ev = engine.evaluation_instances(seqs, 10, "valid")
    with pytest.raises(engine.NonFiniteLoss, match="loss is nan at epoch 0"):
        engine.fit(model, params, inst, ev, ev, seed=0)


def test_fit_is_deterministic_and_learns():
    seqs = next_item_rule(200, 30)
    spec = get_spec("GRU4Rec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 10, "epochs": 6, "eval_step": 2,
                                   "learning_rate": 5e-3, "train_batch_size": 64})
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
        tr = engine.training_instances(seqs, 10)
        va, te = (engine.evaluation_instances(seqs, 10, s) for s in ("valid", "test"))
        runs.append(engine.fit(model, params, tr, va, te, seed=0))
    assert np.array_equal(runs[0].test_ranks, runs[1].test_ranks)
    assert metrics_from_ranks(runs[0].test_ranks)["HR@10"] > 0.8


def test_paper_protocol_reports_each_metric_at_its_own_checkpoint():
    seqs = next_item_rule(100, 30, noise=0.3)
    spec = get_spec("GRU4Rec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 10, "epochs": 4, "learning_rate": 5e-3})
    torch.manual_seed(0)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    tr = engine.training_instances(seqs, 10)
    va, te = (engine.evaluation_instances(seqs, 10, s) for s in ("valid", "test"))
    fit = engine.fit(model, params, tr, va, te, seed=0, protocol="paper")
    assert set(fit.test_ranks_by_metric) == set(METRICS)
    for metric, epoch in fit.best_epoch_by_metric.items():
        best = max(e["valid"][metric] for e in fit.curve if e["valid"])
        first_best = next(e["epoch"] for e in fit.curve if e["valid"] and e["valid"][metric] == best)
        assert epoch == first_best
