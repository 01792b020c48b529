"""The authors' release, switch by switch (models/diffurec.py docstring; bench/engine.py; bench/zoo.py
PROTOCOL_DEFAULTS): each switch does what it says, the paper protocol sets them all, and no clean
record goes stale."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

os.environ.setdefault("OMP_NUM_THREADS", "1")
import bench  # noqa: E402,F401
from recbole.data.interaction import Interaction  # noqa: E402

from bench import engine, store  # noqa: E402
from bench.audit.keys import entry_from_record, expected_key  # noqa: E402
from bench.profiles import load_profile  # noqa: E402
from bench.zoo import PROTOCOL_DEFAULTS, build_model, get_spec, resolve_params  # noqa: E402
from models import diffurec as dr  # noqa: E402

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parent.parent
N_ITEMS = 31
SMALL = {"hidden_size": 16, "inner_size": 64, "n_layers": 4, "n_heads": 4, "MAX_ITEM_LIST_LENGTH": 12}


def build(width=12, seed=0, **over):
    spec = get_spec("DiffuRec")
    params = resolve_params(spec, {**SMALL, "MAX_ITEM_LIST_LENGTH": width, **over})
    params.update(over)
    torch.manual_seed(seed)
    model, _ = build_model(spec, params, N_ITEMS, 20)
    return model


def batch(lengths=(5, 1, 9, 3)):
    g = torch.Generator().manual_seed(0)
    lengths = torch.as_tensor(lengths)
    seq = torch.randint(1, N_ITEMS, (len(lengths), int(lengths.max())), generator=g)
    seq[torch.arange(seq.shape[1])[None, :] >= lengths[:, None]] = 0
    return Interaction({"item_id_list": seq, "item_length": lengths,
                        "item_id": torch.randint(1, N_ITEMS, (len(lengths),), generator=g),
                        "user_id": torch.arange(1, len(lengths) + 1)})


def test_paper_protocol_sets_every_release_switch():
    spec = get_spec("DiffuRec")
    paper = resolve_params(spec, {}, protocol="paper")
    clean = resolve_params(spec, {}, protocol="clean")
    want = {"attention_padding": "release", "hidden_act": "gelu_tanh", "dropout_layout": "release",
            "init": "release", "truncation": "release", "checkpoint_rule": "any-metric",
            "validation_cadence": "release", "validate_all_users": True, "length_bucketing": False,
            "epochs": 500, "eval_step": 20, "stopping_step": 5, "lr_step_size": 100}
    assert {k: paper[k] for k in want} == want
    assert not set(want) - {"hidden_act", "epochs", "eval_step", "stopping_step"} & set(clean)
    assert PROTOCOL_DEFAULTS["paper"]["checkpoint_rule"] == "any-metric"


@pytest.mark.parametrize("padding", ["keys", "release"])
def test_release_padding_output_depends_on_the_padding_width(padding):
    """Same weights, two fixed widths: the release's layout lets real positions attend to the
    padding (so its scores change with the width); key masking does not."""
    scores = []
    for width in (12, 16):
        m = build(width, attention_padding=padding, position_embedding=False, causal=False,
                  lambda_scale=0.0)  # lambda draws are shaped by the width: take them out
        m.eval()
        torch.manual_seed(1)
        scores.append(m.full_sort_predict(batch()))
    same = torch.allclose(scores[0], scores[1], atol=1e-5)
    assert same == (padding == "keys")


def test_release_padding_is_left_padding_with_query_rows_masked():
    seq = torch.tensor([[3, 4, 0, 0], [5, 6, 7, 8]])
    out = dr.left_pad(seq, torch.tensor([2, 4]), 6)
    assert out.tolist() == [[0, 0, 0, 0, 3, 4], [0, 0, 5, 6, 7, 8]]
    hide = dr.release_attention_mask(out == 0, causal=False)
    assert hide[0, 0, :4].all() and not hide[0, 0, 4:].any()         # padded rows hidden, keys never
    causal = dr.release_attention_mask(out == 0, causal=True)
    assert not causal[1, 0, 5, 0] and causal[1, 0, 2, 3]             # a real row sees the padding before it


def test_gelu_tanh_is_the_tanh_approximation():
    x = torch.linspace(-4, 4, 101)
    want = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert torch.allclose(dr.ACTIVATIONS["gelu_tanh"](x), want, atol=1e-6)
    assert not torch.allclose(dr.ACTIVATIONS["gelu"](x), want, atol=1e-6)


@pytest.mark.parametrize("layout,count", [("suite", 14), ("release", 22)])
def test_dropout_layout_counts(monkeypatch, layout, count):
    calls = []
    real_dropout, real_sdpa = F.dropout, F.scaled_dot_product_attention

    def dropout(x, p=0.5, training=True, inplace=False):
        if training and p > 0:
            calls.append("dropout")
        return real_dropout(x, p, training, inplace)

    def sdpa(*args, dropout_p=0.0, **kw):
        if dropout_p > 0:
            calls.append("attn")
        return real_sdpa(*args, dropout_p=dropout_p, **kw)

    m = build(dropout_layout=layout, length_buckets="false")
    m.train()
    monkeypatch.setattr(F, "dropout", dropout)
    monkeypatch.setattr(F, "scaled_dot_product_attention", sdpa)
    m.calculate_loss(batch())
    assert len(calls) == count


def test_release_init_keeps_pytorch_defaults_and_trains_the_padding_row():
    suite, release = build(init="suite"), build(init="release", embedding_init_std=1.0)
    assert torch.all(suite.item_embedding.weight[0] == 0)
    assert torch.any(release.item_embedding.weight[0] != 0)
    assert all(torch.all(b.qkv.bias == 0) for b in suite.blocks)
    assert all(torch.any(b.qkv.bias != 0) and torch.any(b.ff1.bias != 0) for b in release.blocks)
    # q/k/v keep kaiming-uniform: bounded by 1/sqrt(fan_in); Xavier-normal on the FFN is unbounded
    bound = 1 / math.sqrt(16)
    assert all(b.qkv.weight.abs().max() <= bound + 1e-6 for b in release.blocks)
    release.train()
    release.calculate_loss(batch()).backward()
    assert torch.any(release.item_embedding.weight.grad[0] != 0)


def test_release_truncation_differs_only_where_the_ramp_passes_one():
    assert torch.equal(dr.beta_schedule("truncated_linear", 32, "release"),
                       dr.beta_schedule("truncated_linear", 32, "elementwise"))
    rel = dr.beta_schedule("truncated_linear", 10, "release")
    scale = 100.0
    want = np.linspace(scale * 1e-4 + 0.01, scale * 0.001 + 0.01, 10)
    assert np.allclose(rel.numpy(), want)
    assert not torch.allclose(rel, dr.beta_schedule("truncated_linear", 10, "elementwise"))


def test_release_validation_cadence():
    rel = [e for e in range(500) if engine.validates_after(e, 20, 500, "release")]
    suite = [e for e in range(500) if engine.validates_after(e, 20, 500, "suite")]
    assert rel[0] == 20 and rel[-1] == 480 and len(rel) == 24 and 499 not in rel
    assert suite[0] == 19 and suite[-1] == 499


def test_release_scores_are_rounded_batch_means():
    ranks = np.array([0] * 3 + [50] * 2)          # batches of 4: [hit x3, miss], [miss]
    got = engine.release_scores(ranks, 4)
    assert got["HR@10"] == round((0.75 + 0.0) / 2 * 100, 4) == 37.5
    assert store.metrics_from_ranks(ranks)["HR@10"] == pytest.approx(0.6)


def test_any_metric_keeps_the_last_validation_where_any_metric_improved(monkeypatch):
    """Validation scores: NDCG@10 peaks at the 1st, HR@20 improves at the 2nd, nothing at the
    3rd: the release keeps the 2nd; the clean rule keeps the 1st."""
    seq = iter([np.array([0, 0, 30, 30]), np.array([3, 3, 15, 15]), np.array([9, 9, 40, 40])] * 2)
    monkeypatch.setattr(engine, "rank_targets", lambda *a, **k: next(seq))
    model = torch.nn.Linear(1, 1)
    for rule, want in (("any-metric", 2), ("NDCG@10", 1)):
        p = engine._Progress(engine.FitResult(checkpoint_rule=rule))
        for epoch in (1, 2, 3):
            engine._validate(model, p, epoch, None, None, 4, None, "cpu", rule, 4)
        assert p.result.best_epoch == want
        assert p.bad_validations == (1 if rule == "any-metric" else 2)


def test_clean_records_keep_their_config_hashes():
    """The switches are absent from every clean config: no committed clean record goes stale."""
    checked = 0
    for name in ("quick", "full"):
        profile = load_profile(name)
        for path in sorted((ROOT / "results" / name).glob("*/*/seed-*/record.json")):
            record = json.loads(path.read_text())
            if record.get("protocol") != "clean" or record.get("status") != "ok":
                continue
            if record["dataset"] not in profile["datasets"]:
                continue
            key = expected_key(entry_from_record(record), profile, record["data"]["sha256"],
                               int(record["data"]["n_users_full"]))
            assert store.config_hash(key) == record["config_hash"], path
            checked += 1
    assert checked > 20
