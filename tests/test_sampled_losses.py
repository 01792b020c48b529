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
