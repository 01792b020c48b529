"""The controls that isolate DiffuRec's diffusion (issue: "does DiffuRec win because of
diffusion, or because of size and training?"): each is a switch of an existing model."""
import pytest
import torch

from bench.profiles import Entry, load_profile
from bench.runner import resolve
from test_diffurec import build, make_batch


def test_lambda_zero_makes_the_approximator_blind_to_x_s():
    """lambda_scale 0: x0_hat, and so training, does not depend on x_s or d_s."""
    model = build(lambda_scale=0.0).eval()
    batch = make_batch([3, 7, 12, 5])
    perm, chunks = model._prepare(batch["item_id_list"], batch["item_length"])
    lam = model._draw_lambda(4, 12, perm)
    a = model._approximate(chunks, torch.randn(4, model.hidden_size), lam)
    b = model._approximate(chunks, 100 * torch.randn(4, model.hidden_size), lam)
    assert torch.equal(a, b)
    on = build(lambda_scale=0.001).eval()
    on.load_state_dict(model.state_dict())
    c = on._approximate(chunks, 100 * torch.randn(4, model.hidden_size), on._draw_lambda(4, 12, perm))
    assert not torch.equal(a, c)  # the switch is what removes the dependence


def test_lambda_zero_one_pass_equals_the_full_reverse_process():
    """With lambda 0 the single deterministic pass returns what all K reverse steps return."""
    model = build(lambda_scale=0.0).eval()
    batch = make_batch([3, 7, 12, 5])
    torch.manual_seed(0)
    one = model.full_sort_predict(batch)
    torch.manual_seed(1)
    again = model.full_sort_predict(batch)
    assert torch.equal(one, again)  # no randomness reaches the output
    model.lambda_scale = 1e-30  # the loop runs all K steps; lambda underflows to 0 in z
    torch.manual_seed(2)
    looped = model.full_sort_predict(batch)
    assert torch.allclose(one, looped, atol=1e-5)


def test_reverse_from_zero_is_deterministic_and_differs_from_noise():
    noise = build(reverse_steps=1).eval()
    zero = build(reverse_steps=1, reverse_start="zero").eval()
    zero.load_state_dict(noise.state_dict())
    zero.lambda_scale = noise.lambda_scale = 0.5  # large enough that x_T visibly matters
    batch = make_batch([3, 7, 12, 5])
    torch.manual_seed(0)
    a = zero.reverse(batch["item_id_list"], batch["item_length"])
    torch.manual_seed(0)
    b = noise.reverse(batch["item_id_list"], batch["item_length"])
    assert not torch.allclose(a, b)
    zero.lambda_scale = 0.0
    c = zero.reverse(batch["item_id_list"], batch["item_length"])
    assert torch.isfinite(c).all()


@pytest.mark.parametrize("profile_name", ["full", "paper"])
def test_matched_sasrec_shares_every_setting_with_diffurec(profile_name):
    """SASRec-matched resolves to clean DiffuRec's value on every key the two models share."""
    profile = load_profile(profile_name)
    diff, _ = resolve(Entry("beauty", "DiffuRec", 0, "DiffuRec"), profile)
    var = next(v for v in profile["variants"] if v["name"] == "SASRec-matched")
    sas, _ = resolve(Entry("beauty", "SASRec-matched", 0, "SASRec", tuple(sorted(var["params"].items()))), profile)
    shared = (set(diff) & set(sas)) - {"eval_step", "stopping_step"}  # DiffuRec validates every 2 epochs (cost)
    assert {"hidden_size", "n_layers", "n_heads", "inner_size", "hidden_dropout_prob", "attn_dropout_prob",
            "train_batch_size", "learning_rate", "hidden_act", "layer_norm_eps"} <= shared
    assert {k: sas[k] for k in shared} == {k: diff[k] for k in shared}
    assert sas["initializer_range"] == diff["embedding_init_std"]


def test_tuned_sasrec_borrows_seed_0_because_its_config_key_is_the_tuning_runs():
    """SASRec-tuned's seed 0 is the h128.b4.d0.5 tuning run (``tuning.stand_in_runs``): in ``full`` their
    config keys (everything that determines a result; the run name is not in it) are equal seed for seed,
    and SASRec-tuned runs only the seeds that tuning run lacks."""
    from bench.profiles import grid
    from bench.runner import config_key

    profile = load_profile("full")
    entries = {(e.model, e.seed): e for e in grid(profile, datasets=["beauty"])
               if e.model in ("SASRec-tuned", "SASRec-tune-h128.b4.d0.5")}
    assert sorted(entries) == [("SASRec-tune-h128.b4.d0.5", 0), ("SASRec-tuned", 1), ("SASRec-tuned", 2)]
    tune = entries[("SASRec-tune-h128.b4.d0.5", 0)]
    tuned = Entry(tune.dataset, "SASRec-tuned", 0, tune.base_model, entries[("SASRec-tuned", 1)].variant)
    assert config_key(tuned, profile, "0" * 64, 100) == config_key(tune, profile, "0" * 64, 100)
