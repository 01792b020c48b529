"""Model-specific tests for ComiRec (SA and DR extractors) and TiMiRec.

The shared contract test covers what every model must do; this file checks the parts
peculiar to these two: max-over-interests ranking and hard read-out training (ComiRec),
dynamic routing (ComiRec-DR), the two training stages and the distillation loss (TiMiRec),
plus build / gradients / padding / determinism / learning for each variant.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import bench  # noqa: F401  (RecBole compatibility patches, before any recbole import)
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from bench import zoo
from bench.synthetic import next_item_rule

torch.set_num_threads(1)

N_ITEMS, N_USERS = 51, 301  # ids include padding 0
VARIANTS = {
    "comirec-sa": ("ComiRec", {}),
    "comirec-dr": ("ComiRec", {"extractor": "dr"}),
    "timirec": ("TiMiRec", {}),
}
EXTRACTOR_PARAMS = ("item_embedding", "position_embedding", "transformer", "attn_w1", "attn_w2")


def build(name, overrides=None, seed=0, n_items=N_ITEMS):
    spec = zoo.get_spec(name)
    params = zoo.resolve_params(spec, overrides or {})
    torch.manual_seed(seed)
    model, config = zoo.build_model(spec, params, n_items, N_USERS)
    return model, config


def make_batch(histories, targets):
    """Right-padded Interaction, trimmed to the longest history (as the harness does)."""
    width = max(len(h) for h in histories)
    seq = torch.zeros(len(histories), width, dtype=torch.long)
    for row, hist in enumerate(histories):
        seq[row, : len(hist)] = torch.as_tensor(hist)
    return Interaction({
        "item_id_list": seq,
        "item_length": torch.tensor([len(h) for h in histories]),
        "item_id": torch.tensor(targets),
        "user_id": torch.arange(1, len(histories) + 1),
    })


def random_batch(batch=8, max_len=9, seed=1):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_len + 1, size=batch)
    hists = [list(rng.integers(1, N_ITEMS, size=int(n))) for n in sizes]
    return make_batch(hists, list(rng.integers(1, N_ITEMS, size=batch)))


def pad_more(inter, extra=5):
    seq = inter["item_id_list"]
    wider = torch.cat([seq, seq.new_zeros(seq.size(0), extra)], dim=1)
    return Interaction({**{k: inter[k] for k in inter.interaction}, "item_id_list": wider})


def put_in_stage(model, stage):
    if hasattr(model, "set_epoch"):
        model.set_epoch(0 if stage == 1 else model.pretrain_epochs)


def stages(name):
    return (1, 2) if name == "TiMiRec" else (2,)


# ------------------------------------------------------------------ generic checks per variant
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_loss_finite_and_gradients_reach_parameters(variant):
    name, over = VARIANTS[variant]
    model, _ = build(name, over)
    batch = random_batch()
    for stage in stages(name):
        put_in_stage(model, stage)
        model.train()
        model.zero_grad()
        loss = model.calculate_loss(batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        for pname, param in model.named_parameters():
            has_grad = param.grad is not None and bool(param.grad.abs().sum() > 0)
            if stage == 1 and not pname.startswith(EXTRACTOR_PARAMS):
                assert not has_grad, f"{variant} stage 1: generator parameter {pname} was trained"
            else:
                assert has_grad, f"{variant} stage {stage}: no gradient reaches {pname}"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_scores_shape_predict_and_padding_invariance(variant):
    name, over = VARIANTS[variant]
    model, _ = build(name, over)
    batch = random_batch()
    model.eval()
    for stage in stages(name):
        put_in_stage(model, stage)
        with torch.no_grad():
            scores = model.full_sort_predict(batch)
            assert scores.shape == (8, N_ITEMS) and torch.isfinite(scores).all()
            point = model.predict(batch)
            chosen = scores.gather(1, batch["item_id"][:, None]).squeeze(1)
            assert torch.allclose(point, chosen, atol=1e-6)
            padded = model.full_sort_predict(pad_more(batch))
            assert torch.allclose(scores, padded, atol=1e-6), f"{variant} stage {stage}: padding"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_deterministic_under_seed(variant):
    name, over = VARIANTS[variant]
    batch = random_batch()
    runs = []
    for _ in range(2):
        model, _ = build(name, over, seed=123)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        losses = []
        for stage in stages(name):
            put_in_stage(model, stage)
            loss = model.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        model.eval()
        with torch.no_grad():
            runs.append((losses, model.full_sort_predict(batch)))
    assert runs[0][0] == runs[1][0]
    assert torch.equal(runs[0][1], runs[1][1])


def _split(data):
    train_h, train_t, test_h, test_t = [], [], [], []
    for u in range(data.n_users):
        seq = [int(x) for x in data.sequence(u)]
        for t in range(1, len(seq) - 1):  # every prefix, last item held out
            train_h.append(seq[:t])
            train_t.append(seq[t])
        test_h.append(seq[:-1])
        test_t.append(seq[-1])
    return train_h, train_t, test_h, test_t


def _hr10(scores, targets):
    scores = scores.clone()
    scores[:, 0] = -float("inf")
    target_scores = scores.gather(1, targets[:, None])
    rank = (scores > target_scores).sum(dim=1)
    return (rank < 10).float().mean().item()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_learns_next_item_rule_above_popularity(variant):
    name, over = VARIANTS[variant]
    data = next_item_rule(n_users=300, n_items=50)
    train_h, train_t, test_h, test_t = _split(data)
    # A larger step than the papers' so that a few seconds of CPU suffice; TiMiRec spends
    # its first 4 epochs in stage 1 and the rest in stage 2.
    over = {**over, "pretrain_epochs": 4} if name == "TiMiRec" else over
    model, _ = build(name, over, n_items=data.n_items)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    bs, epochs = 128, 10
    for epoch in range(epochs):
        if hasattr(model, "set_epoch"):
            model.set_epoch(epoch)
        model.train()
        perm = torch.randperm(len(train_h), generator=gen).tolist()
        for start in range(0, len(perm), bs):
            idx = perm[start : start + bs]
            batch = make_batch([train_h[j] for j in idx], [train_t[j] for j in idx])
            loss = model.calculate_loss(batch)
            opt.zero_grad()
            loss.backward()
            opt.step()
    if name == "TiMiRec":
        assert model.finetuning
    model.eval()
    targets = torch.tensor(test_t)
    with torch.no_grad():
        hr = _hr10(model.full_sort_predict(make_batch(test_h, test_t)), targets)
    counts = torch.bincount(torch.tensor(train_t), minlength=data.n_items).float()
    pop_hr = _hr10(counts.expand(len(test_t), -1), targets)
    assert hr > pop_hr + 0.4, f"{variant}: HR@10 {hr:.3f} vs popularity {pop_hr:.3f}"


# ------------------------------------------------------------------ ComiRec specifics
@pytest.mark.parametrize("extractor", ["sa", "dr"])
def test_comirec_ranks_by_best_interest_and_trains_on_nearest(extractor):
    model, _ = build("ComiRec", {"extractor": extractor})
    batch = random_batch()
    seq, lengths, target = batch["item_id_list"], batch["item_length"], batch["item_id"]
    interests = model(seq, lengths)
    assert interests.shape == (8, 4, 64)
    table = model.item_embedding.weight
    per_interest = torch.einsum("bkd,nd->bkn", interests, table)
    assert torch.allclose(model.full_sort_predict(batch), per_interest.max(dim=1).values, atol=1e-6)
    # Training uses the interest with the largest inner product with the target only.
    best = per_interest.gather(2, target.view(-1, 1, 1).expand(-1, 4, 1)).squeeze(2).argmax(1)
    expected = F.cross_entropy(per_interest[torch.arange(8), best], target)
    assert torch.allclose(model.calculate_loss(batch), expected, atol=1e-6)
    # The interests are distinct (not K copies of one vector).
    assert (interests[:, 0] - interests[:, 1]).abs().max() > 1e-4


def test_comirec_dr_routing():
    model, _ = build("ComiRec", {"extractor": "dr", "routing_iters": 1})
    batch = random_batch()
    seq, lengths = batch["item_id_list"], batch["item_length"]
    # One iteration: couplings are uniform (b = 0 -> c = 1/K over interests), padding is 0.
    mask = (seq != 0).float()
    his = model.item_embedding(seq) * mask[..., None]
    e_hat = torch.einsum("lkoi,bli->bklo", model.routing_weight[: seq.size(1)], his)
    s = (e_hat * mask[:, None, :, None]).sum(2) / model.num_interest
    norm2 = (s * s).sum(-1, keepdim=True)
    squashed = s * norm2 / (1 + norm2) / torch.sqrt(norm2 + 1e-9)
    one_iter = model(seq, lengths)
    assert torch.allclose(one_iter, squashed, atol=1e-5)
    # Three iterations (the default) re-weight positions; squash keeps |v| < 1.
    model.routing_iters = 3
    routed = model(seq, lengths)
    assert not torch.allclose(routed, one_iter, atol=1e-4)
    assert (routed.norm(dim=-1) < 1).all()
    # Only the last iteration back-propagates into the routing matrices (stop-gradient before).
    routed.sum().backward()
    assert model.routing_weight.grad is not None
    # DR has no SA parameters and vice versa.
    names = {n for n, _ in model.named_parameters()}
    assert names == {"item_embedding.weight", "routing_weight"}


# ------------------------------------------------------------------ TiMiRec specifics
def test_timirec_stage_switch_by_epoch_and_by_steps():
    model, config = build("TiMiRec", {"pretrain_epochs": 3, "pretrain_steps": 2})
    assert config["pretrain_epochs"] == 3 and not model.finetuning
    batch = random_batch()
    # RecBole's Trainer never calls set_epoch: training calls are counted.
    model.train()
    phases = []
    for _ in range(4):
        model.calculate_loss(batch)
        phases.append(model.finetuning)
    assert phases == [False, False, True, True]
    # Evaluation calls do not count; set_epoch takes over from counting.
    fresh, _ = build("TiMiRec", {"pretrain_epochs": 3, "pretrain_steps": 1})
    fresh.eval()
    fresh.calculate_loss(batch)
    fresh.calculate_loss(batch)
    assert not fresh.finetuning
    fresh.train()
    for epoch, want in [(0, False), (2, False), (3, True), (7, True)]:
        fresh.set_epoch(epoch)
        for _ in range(3):
            fresh.calculate_loss(batch)
        assert fresh.finetuning is want, epoch
    fresh.set_epoch(1)  # stages never move back
    assert fresh.finetuning
    # pretrain_epochs: 0 -> distillation from the first step.
    scratch, _ = build("TiMiRec", {"pretrain_epochs": 0})
    assert scratch.finetuning


def test_timirec_stage_rules_and_checkpoint_carries_stage():
    model, _ = build("TiMiRec")
    batch = random_batch()
    seq, lengths = batch["item_id_list"], batch["item_length"]
    model.eval()
    table = model.item_embedding.weight
    with torch.no_grad():
        interests = model.extract_interests(seq, lengths)
        assert not model.finetuning  # a fresh model pre-trains: best interest
        s1 = model.full_sort_predict(batch)
        best = torch.einsum("bkd,nd->bkn", interests, table).max(1).values
        assert torch.allclose(s1, best, atol=1e-6)
        stage1_state = {k: v.clone() for k, v in model.state_dict().items()}
        model.set_epoch(model.pretrain_epochs)  # stage 2: generator-weighted mixture
        s2 = model.full_sort_predict(batch)
        weights = torch.softmax(model.interest_logits(seq, lengths), dim=-1)
        mixture = torch.einsum("bk,bkd->bd", weights, interests)
        assert torch.allclose(s2, mixture @ table.t(), atol=1e-6)
        assert not torch.allclose(s1, s2)
        # A model rebuilt from a checkpoint takes the checkpoint's stage ...
        other, _ = build("TiMiRec", seed=5)
        other.load_state_dict({k: v.clone() for k, v in model.state_dict().items()})
        assert other.finetuning
        rebuilt, _ = build("TiMiRec", seed=6)
        rebuilt.eval()
        rebuilt.load_state_dict(stage1_state)
        assert not rebuilt.finetuning
        assert torch.allclose(rebuilt.full_sort_predict(batch), s1, atol=1e-6)
        # ... but a model the harness has moved on keeps its stage when the best weights of
        # the stage that ended are restored into it.
        model.load_state_dict(stage1_state)
        assert model.finetuning and int(model.stage) == 2


def test_timirec_advance_stage_hook():
    """Early stopping ends stage 1 (True: go on in stage 2); stage 2 is the last (False).
    The epoch cap never moves a model back."""
    model, _ = build("TiMiRec")
    assert not model.finetuning
    assert model.set_epoch(0) is False and not model.finetuning
    assert model.advance_stage() is True and model.finetuning
    assert model.set_epoch(1) is False and model.finetuning
    assert model.set_epoch(model.pretrain_epochs) is False  # already in stage 2: no change
    assert model.advance_stage() is False and model.finetuning
    capped, _ = build("TiMiRec", {"pretrain_epochs": 2})
    assert [capped.set_epoch(e) for e in range(4)] == [False, False, True, False]


def _fit_timirec(overrides, epochs=10):
    from bench import engine

    data = next_item_rule(n_users=120, n_items=30, min_len=5, max_len=10, seed=2)
    model, config = build("TiMiRec", {"learning_rate": 5e-3, "epochs": epochs, "eval_step": 1,
                                      "stopping_step": 1, "MAX_ITEM_LIST_LENGTH": 10,
                                      "train_batch_size": 64, "eval_batch_size": 256, **overrides},
                          n_items=data.n_items)
    params = {k: config[k] for k in ("learning_rate", "epochs", "eval_step", "stopping_step",
                                     "MAX_ITEM_LIST_LENGTH", "train_batch_size", "eval_batch_size",
                                     "weight_decay")}
    train = engine.training_instances(data, 10)
    valid, test = (engine.evaluation_instances(data, 10, s) for s in ("valid", "test"))
    return model, engine.fit(model, params, train, valid, test, seed=0)


def test_timirec_fit_reports_the_fine_tuned_stage():
    """Stage 1 trains to early stopping (advance_stage), stage 2 follows; the reported
    checkpoint is the best validation epoch of stage 2, and the curve says which stage
    every epoch belongs to."""
    model, fit = _fit_timirec({"pretrain_epochs": 200}, epochs=12)
    stages = [entry["stage"] for entry in fit.curve]
    assert stages[0] == 1 and stages[-1] == 2 and stages == sorted(stages)
    assert fit.stage == 2 and model.finetuning
    assert fit.curve[fit.best_epoch]["stage"] == 2


def test_timirec_fit_cap_on_stage_one():
    """pretrain_epochs caps stage 1: set_epoch moves to stage 2 at that epoch."""
    model, fit = _fit_timirec({"pretrain_epochs": 2}, epochs=5)
    assert [entry["stage"] for entry in fit.curve][:3] == [1, 1, 2]
    assert fit.stage == 2 and fit.curve[fit.best_epoch]["stage"] == 2


def test_timirec_distillation_loss():
    tau = 0.5
    model, _ = build("TiMiRec", {"temperature": tau, "num_interest": 2, "n_layers": 2})
    model.set_epoch(model.pretrain_epochs)
    model.eval()  # no dropout in the projection, so the pieces below are reproducible
    batch = random_batch()
    seq, lengths, target = batch["item_id_list"], batch["item_length"], batch["item_id"]
    user, interests, logits = model(seq, lengths)
    rec = F.cross_entropy(user @ model.item_embedding.weight.t(), target)
    target_emb = model.item_embedding(target)
    q = torch.softmax(F.cosine_similarity(interests, target_emb[:, None], dim=-1) / tau, -1)
    kl = (q * (q.log() - torch.log_softmax(logits / tau, -1))).sum(-1).mean()
    total = model.calculate_loss(batch)
    assert torch.allclose(total, rec + tau * tau * kl, atol=1e-6)
    # The distillation term trains the generator only: the target distribution is detached.
    distill = total - rec
    extractor = [p for n, p in model.named_parameters() if n.startswith(EXTRACTOR_PARAMS)]
    grads = torch.autograd.grad(distill, extractor, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().max() < 1e-7 for g in grads)
    generator = [p for n, p in model.named_parameters() if n.startswith("gen_")]
    grads = torch.autograd.grad(distill, generator, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
