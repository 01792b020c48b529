"""BERT4Rec's ``faithful_cloze`` switch: the prefix's target joins its cloze sequence, and the test
[mask] follows the whole history (RecBole 1.2.1 drops the oldest item of every row)."""
import numpy as np
import pytest
import torch

from bench import engine
from bench.synthetic import next_item_rule
from bench.zoo import build_model, get_spec, resolve_params

WIDTH = 8


def _model(faithful, rows=30):
    seqs = next_item_rule(30, 20, min_len=3, max_len=14)
    spec = get_spec("BERT4Rec")
    params = resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": WIDTH, "faithful_cloze": faithful})
    torch.manual_seed(0)
    model, _ = build_model(spec, params, seqs.n_items, seqs.n_users + 1)
    model.eval()
    return model, engine.make_batch(engine.training_instances(seqs, WIDTH), np.arange(rows))


def test_append_puts_the_item_after_the_history_and_drops_the_oldest_only_in_full_rows():
    model, _ = _model(True)
    seq = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 0]])
    out, pos = model._append(seq, torch.tensor([2, 3]), torch.tensor([7, 8]))
    assert out.tolist() == [[1, 2, 7, 0, 0], [3, 4, 5, 8, 0]] and pos.tolist() == [2, 3]
    full = torch.tensor([list(range(1, WIDTH + 1)), [1, 2] + [0] * (WIDTH - 2)])
    out, pos = model._append(full, torch.tensor([WIDTH, 2]), torch.tensor([9, 9]))
    assert out.shape == (2, WIDTH) and pos.tolist() == [WIDTH - 1, 2]
    assert out[0].tolist() == list(range(2, WIDTH + 1)) + [9] and out[1, :3].tolist() == [1, 2, 9]


def test_training_can_mask_the_target_and_scores_read_the_appended_mask():
    model, batch = _model(True)
    model.mask_ratio = 1.0  # every real position masked (the cap keeps the last ones): the target too
    seq, lengths, target = batch["item_id_list"], batch["item_length"], batch["item_id"]
    full, pos = model._append(seq, lengths, target)
    torch.manual_seed(3)
    masked, in_loss = model._cloze(full)
    assert in_loss[torch.arange(30), pos].all() and (masked[torch.arange(30), pos] == model.mask_token).all()
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        mask_seq, mask_pos = model._append(seq, lengths, model.mask_token)
        expected = model.forward(mask_seq)[torch.arange(30), mask_pos] @ model.item_embedding.weight[:model.n_items].T
        assert torch.allclose(scores, expected + model.output_bias, atol=1e-5)
        one = model.predict(batch)
        assert torch.allclose(one, scores[torch.arange(30), target], atol=1e-5)


@pytest.mark.parametrize("faithful", [False, True])
def test_scores_do_not_depend_on_trailing_padding(faithful):
    model, batch = _model(faithful, rows=9)  # the first user's prefixes: a trimmed batch
    assert batch["item_id_list"].size(1) < WIDTH
    wide = {k: batch[k] for k in batch.interaction}
    wide["item_id_list"] = torch.nn.functional.pad(batch["item_id_list"], (0, WIDTH - batch["item_id_list"].size(1)))
    from recbole.data.interaction import Interaction

    with torch.no_grad():
        assert torch.allclose(model.full_sort_predict(batch), model.full_sort_predict(Interaction(wide)), atol=1e-5)


def test_the_switch_changes_what_training_sees():
    loss = {}
    for faithful in (False, True):
        model, batch = _model(faithful)
        torch.manual_seed(5)
        loss[faithful] = model.calculate_loss(batch).item()
    assert loss[False] != loss[True]
