"""The sampled objectives of the baselines' own papers, used by the diagnosis runs.

SASRec's BCE and GRU4Rec's and Caser's BPR: one positive, one uniform negative per target."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench import engine
from bench.synthetic import next_item_rule
from bench.zoo import build_model, get_spec, resolve_params


def test_bce_loss_is_the_papers_objective_at_the_last_position():
    seqs = next_item_rule(40, 20, min_len=4, max_len=12)
    spec = get_spec("SASRec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 12, "loss_type": "BCE"})
    torch.manual_seed(0)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    model.eval()  # no dropout: the loss is a function of the draw alone
    batch = engine.make_batch(engine.training_instances(seqs, 12), np.arange(16))
    torch.manual_seed(5)
    loss = model.calculate_loss(batch)
    torch.manual_seed(5)
    neg = torch.randint(1, model.n_items, (16,))
    out = model.forward(batch["item_id_list"], batch["item_length"])
    pos_p = torch.sigmoid((out * model.item_embedding(batch["item_id"])).sum(-1))
    neg_p = torch.sigmoid((out * model.item_embedding(neg)).sum(-1))
    expected = -(torch.log(pos_p).mean() + torch.log(1 - neg_p).mean())
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    assert model.loss_type == "BCE" and model.full_sort_predict(batch).shape == (16, seqs.n_items)


@pytest.mark.parametrize("name", ["GRU4Rec", "Caser"])
def test_bpr_loss_draws_one_uniform_negative_per_target(name):
    seqs = next_item_rule(40, 20, min_len=4, max_len=12)
    spec = get_spec(name)
    length = spec.params.get("MAX_ITEM_LIST_LENGTH", 12)
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": length, "loss_type": "BPR"})
    torch.manual_seed(0)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    model.eval()
    batch = engine.make_batch(engine.training_instances(seqs, length), np.arange(16))
    torch.manual_seed(5)
    loss = model.calculate_loss(batch)
    torch.manual_seed(5)
    neg = torch.randint(1, model.n_items, (16,))
    args = (batch["item_id_list"], batch["item_length"]) if name == "GRU4Rec" else (batch["user_id"], batch["item_id_list"])
    out = model.forward(*args)
    gap = (out * model.item_embedding(batch["item_id"])).sum(-1) - (out * model.item_embedding(neg)).sum(-1)
    expected = -F.logsigmoid(gap).mean()
    if name == "Caser":  # RecBole's Caser adds its L2 terms to whichever loss it trains with
        expected = expected + model.reg_weight * model.reg_loss(
            [model.user_embedding.weight, model.item_embedding.weight, model.conv_v.weight,
             model.fc1.weight, model.fc2.weight]) + model.reg_loss_conv_h()
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    assert model.full_sort_predict(batch).shape == (16, seqs.n_items)


def test_sampled_softmax_masks_accidental_hits_and_matches_its_definition():
    from models.negatives import sampled_softmax_loss

    torch.manual_seed(0)
    user, table = torch.randn(4, 8), torch.randn(30, 8)
    target = torch.tensor([3, 7, 7, 29])
    torch.manual_seed(1)
    loss = sampled_softmax_loss(user, table, target, n_neg=50)
    torch.manual_seed(1)
    neg = torch.randint(1, 30, (50,))
    expected = []
    for b in range(4):
        keep = neg[neg != target[b]]  # a negative that is the target itself is dropped from its row
        logits = torch.cat([(user[b] * table[target[b]]).sum().view(1), table[keep] @ user[b]])
        expected.append(-torch.log_softmax(logits, 0)[0])
    assert (neg == 7).any() or (neg == 3).any()  # the draw did hit a target, so the mask mattered
    assert math.isclose(loss.item(), torch.stack(expected).mean().item(), rel_tol=1e-5)


def _multi_interest(name, loss_type, stage=2):
    seqs = next_item_rule(40, 20, min_len=4, max_len=12)
    spec = get_spec(name)
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 12, "loss_type": loss_type})
    torch.manual_seed(0)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    if name == "TiMiRec":
        model.set_epoch(0 if stage == 1 else model.pretrain_epochs)
    model.eval()
    return model, engine.make_batch(engine.training_instances(seqs, 12), np.arange(16))


def test_comirec_ssm_is_a_sampled_softmax_over_ten_negatives_per_row():
    from models.negatives import sampled_softmax_loss

    model, batch = _multi_interest("ComiRec", "SSM")
    torch.manual_seed(5)
    loss = model.calculate_loss(batch)
    interests = model(batch["item_id_list"], batch["item_length"])
    target = batch["item_id"]
    best = torch.einsum("bkd,bd->bk", interests, model.item_embedding(target)).argmax(-1)
    torch.manual_seed(5)
    expected = sampled_softmax_loss(interests[torch.arange(16), best], model.item_embedding.weight, target, 160)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)


@pytest.mark.parametrize("stage", [1, 2])
def test_timirec_bpr_replaces_the_softmax_in_both_stages(stage):
    model, batch = _multi_interest("TiMiRec", "BPR", stage)
    ce_model, _ = _multi_interest("TiMiRec", "CE", stage)
    torch.manual_seed(5)
    loss, ce = model.calculate_loss(batch), ce_model.calculate_loss(batch)
    seq, lengths, target = batch["item_id_list"], batch["item_length"], batch["item_id"]
    table = model.item_embedding.weight
    if stage == 1:
        interests = model.extract_interests(seq, lengths)
        user = interests[torch.arange(16), torch.einsum("bkd,bd->bk", interests, table[target]).argmax(-1)]
        extra = 0.0
    else:
        user, _, _ = model(seq, lengths)
        extra = ce.item() - F.cross_entropy(user @ table.t(), target).item()  # the distillation term
    torch.manual_seed(5)
    neg = torch.randint(1, model.n_items, (16,))
    bpr = -F.logsigmoid((user * (table[target] - table[neg])).sum(-1)).mean()
    assert math.isclose(loss.item(), bpr.item() + extra, rel_tol=1e-5)


@pytest.mark.parametrize("name", ["ComiRec", "TiMiRec"])
def test_unknown_loss_type_names_the_option(name):
    spec = get_spec(name)
    with pytest.raises(ValueError, match="loss_type"):
        build_model(spec, resolve_params(spec, {"loss_type": "BCE"}), 20, 10)
