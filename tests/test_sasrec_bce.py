"""SASRec's own objective (loss_type BCE): one positive, one uniform negative, binary cross-entropy."""
import math

import numpy as np
import torch

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
