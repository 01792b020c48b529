"""bench equivalence: its machinery with the suite's DiffuRec on both sides (the release is no part of the suite)."""
import os

import pytest
import torch

from bench import equivalence as eq
from bench.cli import main

SIZES = dict(hidden=16, layers=2, items=30, length=6, steps=8, seed=0)


def _sides(**reference_params):
    """(suite side, reference side, batch, draws): the reference a weight copy of the suite model."""
    model = eq.build_suite_model(**SIZES, lambda_scale=0.1)
    other = eq.build_suite_model(**{**SIZES, "seed": 1}, lambda_scale=0.1, **reference_params)
    reference = eq.SuiteSide(other, name="reference")
    reference.copy_weights(model)
    batch, draws = eq.inputs(model, 4, 0)
    return eq.SuiteSide(model), reference, batch, draws


def _verdicts(lines):
    return {line.what.split(" (")[0]: line.passed for line in lines}


def test_identical_copies_pass():
    lines = eq.compare(*_sides(), tol=1e-5)
    assert len(lines) == 1 + (1 + 2 + 4 + 12 * 2 + 2) + 1  # loss, 34 gradients, scores
    assert all(line.passed and line.max_abs == 0.0 for line in lines), [l.render() for l in lines]


def test_nudged_weight_fails_loss_grads_and_scores():
    suite, reference, batch, draws = _sides()
    with torch.no_grad():
        reference.model.blocks[0].ff1.weight[0, 0] += 0.05
    verdicts = _verdicts(eq.compare(suite, reference, batch, draws, tol=1e-5))
    assert not verdicts["loss"] and not verdicts["reverse-process scores"]
    assert not verdicts["grad blocks.0.ff1.weight"] and not verdicts["grad out_norm.weight"]


def test_reference_sampling_noise_fails_scores_only():
    verdicts = _verdicts(eq.compare(*_sides(sampling_noise="std"), tol=1e-5))
    assert not verdicts.pop("reverse-process scores")
    assert all(verdicts.values()), verdicts


def test_a_changed_draw_order_fails_not_crashes():
    suite, reference, batch, draws = _sides(train_x0="sample")  # one more randn_like in training
    verdicts = _verdicts(eq.compare(suite, reference, batch, draws, tol=1e-5))
    assert verdicts == {"loss and gradients": False, "reverse-process scores": True}


def test_lambda_layout_follows_the_models_padding():
    suite, _, batch, draws = _sides()
    assert suite.model.attention_padding == "release"  # the paper protocol: left-padded, as drawn
    assert torch.equal(suite._lambda(draws.lam_z, batch), draws.lam_z)
    suite.model.attention_padding = "keys"              # right-padded: each row's columns shift left
    lam = suite._lambda(draws.lam_z, batch)
    n = int(batch.lengths[-1])
    assert torch.equal(lam[-1, :n], draws.lam_z[-1, -n:]) and torch.equal(lam[0], draws.lam_z[0])


def test_bad_reference_dir_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("")
    assert main(["equivalence", "--reference", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "src/diffurec.py" in err[0] and str(tmp_path) in err[0]


@pytest.mark.skipif(not os.environ.get("BENCH_DIFFUREC_RELEASE"),
                    reason="set BENCH_DIFFUREC_RELEASE to a checkout of WHUIR/DiffuRec")
def test_against_the_release(capsys):
    code = main(["equivalence", "--reference", os.environ["BENCH_DIFFUREC_RELEASE"]])
    out = capsys.readouterr().out
    assert code == 0, out
