"""DiffuRec (models/diffurec.py): schedules, forward/posterior maths, masks, training.

Every expected value is derived here independently of the model code (closed forms
in float64 Python arithmetic), then compared with the model's float32 buffers.
"""
import math
import os

import numpy as np
import pytest
import torch

os.environ.setdefault("OMP_NUM_THREADS", "1")
import bench  # noqa: E402,F401  (RecBole compatibility first)
from recbole.data.interaction import Interaction  # noqa: E402

from bench.synthetic import next_item_rule  # noqa: E402
from bench.zoo import build_model, get_spec, resolve_params  # noqa: E402

torch.set_num_threads(1)

SMALL = {"hidden_size": 16, "inner_size": 32, "n_layers": 2, "n_heads": 2, "MAX_ITEM_LIST_LENGTH": 12}
N_ITEMS = 31


def build(protocol="clean", n_items=N_ITEMS, **over):
    spec = get_spec("DiffuRec")
    params = resolve_params(spec, {**SMALL, **over}, protocol=protocol)
    params.update(over)  # explicit test settings win over the protocol's
    model, _ = build_model(spec, params, n_items, 50)
    return model


def make_batch(lengths, n_items=N_ITEMS, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.as_tensor(lengths)
    width = int(lengths.max())
    seq = torch.randint(1, n_items, (len(lengths), width), generator=g)
    seq[torch.arange(width)[None, :] >= lengths[:, None]] = 0
    return Interaction({"item_id_list": seq, "item_length": lengths,
                        "item_id": torch.randint(1, n_items, (len(lengths),), generator=g),
                        "user_id": torch.arange(1, len(lengths) + 1)})


def widen(batch, extra, garbage=False):
    """The same batch with ``extra`` padding columns (garbage: random item ids in every
    padded cell, so that the model must go by item_length, not by id 0)."""
    seq = batch["item_id_list"]
    wide = torch.cat([seq, torch.zeros(seq.shape[0], extra, dtype=seq.dtype)], 1)
    if garbage:
        pad = torch.arange(wide.shape[1])[None, :] >= batch["item_length"][:, None]
        wide[pad] = torch.randint(1, N_ITEMS, (int(pad.sum()),), generator=torch.Generator().manual_seed(5))
    return Interaction({**{k: batch[k] for k in ("item_length", "item_id", "user_id")}, "item_id_list": wide})


# ---------------------------------------------------------------- schedules
def expected_betas(name, T):
    """beta_1..beta_T written out from the definitions in the model's docstring."""
    out = []
    for s in range(1, T + 1):
        if name in ("linear", "truncated_linear"):
            lo, hi = 1000 / T * 1e-4, 1000 / T * 0.02  # DDPM's 1e-4..0.02 at T=1000, rescaled
            b = lo + (hi - lo) * (s - 1) / (T - 1)
            if name == "truncated_linear":
                b += 0.01
                if b > 1:
                    b /= 10
        else:
            f = ((lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2) if name == "cosine"
                 else (lambda u: 1 - math.sqrt(u + 1e-4)))
            b = 1 - f(s / T) / f((s - 1) / T)
        out.append(min(b, 0.999))
    return out


@pytest.mark.parametrize("name", ["truncated_linear", "linear", "cosine", "sqrt"])
def test_schedule_betas_and_alpha_bar_match_closed_forms(name):
    T = 32
    m = build(noise_schedule=name, diffusion_steps=T, reverse_steps=T)
    betas = expected_betas(name, T)
    np.testing.assert_allclose(m.betas.double().numpy(), betas, rtol=1e-6, atol=1e-9)
    # abar_s in closed form where one exists, else the running product
    if name == "cosine":
        f = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
        abar = [f(s / T) / f(0) for s in range(1, T + 1)]
        ok = [b < 0.999 for b in betas]  # clipping breaks the telescoping product at the end
        k = ok.index(False) if False in ok else T
        np.testing.assert_allclose(m.alphas_cumprod[:k].double().numpy(), abar[:k], rtol=1e-5, atol=1e-7)
    elif name == "sqrt":
        abar = [(1 - math.sqrt(s / T + 1e-4)) / (1 - math.sqrt(1e-4)) for s in range(1, T)]
        np.testing.assert_allclose(m.alphas_cumprod[: T - 1].double().numpy(), abar, rtol=1e-5, atol=1e-7)
    prod, expected = 1.0, []
    for b in betas:
        prod *= 1 - b
        expected.append(prod)
    np.testing.assert_allclose(m.alphas_cumprod.double().numpy(), expected, rtol=1e-5, atol=1e-10)
    assert torch.all(m.betas > 0) and torch.all(m.betas < 1)


def test_truncated_linear_endpoints_and_truncation():
    m = build(diffusion_steps=32, reverse_steps=32)
    assert m.betas[0].item() == pytest.approx(0.01 + 0.003125, rel=1e-6)
    assert m.betas[-1].item() == pytest.approx(0.01 + 0.625, rel=1e-6)
    # T = 10: the ramp reaches 2.01; every beta above tau = 1 is divided by 10
    m10 = build(diffusion_steps=10, reverse_steps=10)
    raw = [0.01 + 100 * (1e-4 + (s - 1) / 9 * (0.02 - 1e-4)) for s in range(1, 11)]
    assert any(r > 1 for r in raw)
    np.testing.assert_allclose(m10.betas.double().numpy(), [r / 10 if r > 1 else r for r in raw], rtol=1e-6)


def test_q_sample_has_the_forward_marginal_moments():
    torch.manual_seed(0)
    m = build()
    n, H = 100_000, m.hidden_size
    x0 = torch.linspace(-2, 2, H)
    for s in (1, 8, 32):
        abar = m.alphas_cumprod[s - 1].item()
        xs = m.q_sample(x0.expand(n, H), torch.full((n,), s))
        se_mean = math.sqrt((1 - abar) / n)
        assert torch.allclose(xs.mean(0), math.sqrt(abar) * x0, atol=5 * se_mean + 1e-6)
        var = xs.var(0)
        # sample variance: sd ~ var * sqrt(2 / n)
        assert torch.allclose(var, torch.full_like(var, 1 - abar), rtol=5 * math.sqrt(2 / n), atol=1e-7)


def posterior_by_product_of_gaussians(abar_t, abar_prev, x0, xt):
    """q(x_{t-1} | x_t, x_0) ~ q(x_t | x_{t-1}) q(x_{t-1} | x_0), both Gaussian in x_{t-1}."""
    alpha = abar_t / abar_prev
    beta = 1 - alpha
    # q(x_t | x_{t-1}) = N(x_t; sqrt(alpha) x_{t-1}, beta): in x_{t-1}, mean x_t/sqrt(alpha), var beta/alpha
    m1, v1 = xt / math.sqrt(alpha), beta / alpha
    m2, v2 = math.sqrt(abar_prev) * x0, 1 - abar_prev
    var = 1 / (1 / v1 + 1 / v2)
    return var * (m1 / v1 + m2 / v2), var


@pytest.mark.parametrize("name", ["truncated_linear", "cosine"])
def test_posterior_mean_and_variance_match_product_of_gaussians(name):
    T = 32
    m = build(noise_schedule=name, diffusion_steps=T, reverse_steps=T)
    g = torch.Generator().manual_seed(1)
    x0, xt = (torch.randn(m.hidden_size, generator=g).double() for _ in range(2))
    abar = m.alphas_cumprod.double()
    for t in range(2, T + 1):
        mean, var = posterior_by_product_of_gaussians(abar[t - 1].item(), abar[t - 2].item(), x0, xt)
        got_mean, got_var = m.q_posterior(x0.float()[None], xt.float()[None], torch.tensor([t]))
        assert torch.allclose(got_mean[0].double(), mean, rtol=1e-4, atol=1e-5), t
        assert got_var.item() == pytest.approx(var, rel=1e-4)
    # t = 1: abar_0 = 1, the posterior collapses onto x_0
    got_mean, got_var = m.q_posterior(x0.float()[None], xt.float()[None], torch.tensor([1]))
    assert torch.allclose(got_mean[0].double(), x0, atol=1e-5) and got_var.item() == 0.0
    # with K = T the reverse coefficients are the posterior's, visited t = T..1
    assert m.rev_step_index.tolist() == list(range(T - 1, -1, -1))
    assert torch.allclose(m.rev_coef_x0, m.posterior_coef_x0.flip(0))
    assert torch.allclose(m.rev_coef_xt, m.posterior_coef_xt.flip(0))
    assert torch.allclose(m.rev_sigma[:-1], m.posterior_variance.flip(0)[:-1].sqrt())
    assert m.rev_sigma[-1].item() == 0.0


def test_respaced_reverse_and_noise_variants():
    """K < T: the posterior of the respaced chain (abar at the visited steps), per noise rule."""
    T, K = 32, 8
    taus = [int(round(1 + i * (T - 1) / (K - 1))) for i in range(K)][::-1]  # visiting order
    for noise in ("std", "variance", "large"):
        m = build(diffusion_steps=T, reverse_steps=K, sampling_noise=noise)
        assert (m.rev_step_index + 1).tolist() == taus
        abar = m.alphas_cumprod.double()
        for k, t in enumerate(taus[:-1]):
            prev = abar[taus[k + 1] - 1].item()
            coef_x0, var = posterior_by_product_of_gaussians(abar[t - 1].item(), prev, 1.0, 0.0)
            coef_xt, _ = posterior_by_product_of_gaussians(abar[t - 1].item(), prev, 0.0, 1.0)
            assert m.rev_coef_x0[k].item() == pytest.approx(coef_x0, rel=1e-4)
            assert m.rev_coef_xt[k].item() == pytest.approx(coef_xt, rel=1e-4)
            beta = 1 - abar[t - 1].item() / prev
            want = {"std": math.sqrt(var), "variance": var, "large": math.sqrt(beta)}[noise]
            assert m.rev_sigma[k].item() == pytest.approx(want, rel=1e-4)
        # the last visited step returns x0_hat itself, without noise
        assert m.rev_coef_x0[-1].item() == pytest.approx(1.0) and abs(m.rev_coef_xt[-1].item()) < 1e-6
        assert m.rev_sigma[-1].item() == 0.0
    assert build(reverse_steps=1).rev_step_index.tolist() == [T - 1]


# ---------------------------------------------------------------- model behaviour
CONFIGS = {
    "clean": dict(protocol="clean"),
    "paper": dict(protocol="paper"),
    "gru": dict(approximator="gru"),
    "no_buckets": dict(length_buckets="false"),
    "bidirectional_no_buckets": dict(protocol="paper", length_buckets="false"),
    "rstar_reverse4": dict(rounding="neg_sq_distance", reverse_steps=4),
}


@pytest.mark.parametrize("cfg", CONFIGS)
def test_shapes_determinism_and_predict(cfg):
    batch = make_batch([5, 1, 9, 3, 9, 2])
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        m = build(**CONFIGS[cfg])
        m.train()
        loss = m.calculate_loss(batch)
        m.eval()
        torch.manual_seed(4)
        scores = m.full_sort_predict(batch)
        torch.manual_seed(4)
        single = m.predict(batch)
        outs.append((loss.item(), scores, single))
    loss, scores, single = outs[0]
    assert math.isfinite(loss) and scores.shape == (6, N_ITEMS) and single.shape == (6,)
    assert torch.isfinite(scores).all()
    assert outs[1][0] == loss and torch.equal(outs[1][1], scores) and torch.equal(outs[1][2], single)
    assert torch.allclose(single, scores.gather(1, batch["item_id"][:, None])[:, 0], rtol=1e-5, atol=1e-4)


def test_neg_sq_distance_rounding_ranks_by_distance():
    m = build(rounding="neg_sq_distance", reverse_steps=4)
    m.eval()
    batch = make_batch([4, 6])
    torch.manual_seed(0)
    scores = m.full_sort_predict(batch)
    torch.manual_seed(0)
    x0 = m.reverse(batch["item_id_list"], batch["item_length"])
    want = -torch.cdist(x0, m.item_embedding.weight) ** 2
    assert torch.allclose(scores, want, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("cfg", ["clean", "paper", "gru"])
def test_gradients_reach_every_parameter(cfg):
    torch.manual_seed(0)
    m = build(**CONFIGS[cfg])
    m.train()
    m.calculate_loss(make_batch([5, 1, 9, 3, 12, 2, 7, 7])).backward()
    silent = [n for n, p in m.named_parameters()
              if p.requires_grad and (p.grad is None or not torch.any(p.grad != 0))]
    assert not silent, f"no gradient reaches {silent}"
    assert all(torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("cfg", CONFIGS)
def test_scores_ignore_padding_columns_and_their_contents(cfg):
    m = build(**CONFIGS[cfg])
    m.eval()
    lengths = [5, 1, 9, 3, 9, 2, 4]
    base = make_batch(lengths)
    variants = [widen(base, 3), widen(base, 3, garbage=True)]
    torch.manual_seed(11)
    ref = m.full_sort_predict(base)
    torch.manual_seed(12)
    ref_loss = m.calculate_loss(base)  # eval mode: no dropout, so the loss is comparable too
    for other in variants:
        torch.manual_seed(11)
        assert torch.allclose(m.full_sort_predict(other), ref, rtol=1e-5, atol=1e-4)
        torch.manual_seed(12)
        assert m.calculate_loss(other).item() == pytest.approx(ref_loss.item(), rel=1e-5)


def test_causal_mask_hides_the_future_and_bidirectional_does_not():
    """Changing an earlier item changes x0_hat in both modes; the last block's query is
    the last real position, so the difference between modes shows in earlier layers:
    with causal attention, position i's hidden state ignores items after i."""
    for causal in (True, False):
        torch.manual_seed(0)
        m = build(causal=causal, n_layers=2)
        m.eval()
        e = torch.randn(1, 6, m.hidden_size)
        h1 = m.blocks[0](e, None, causal)
        e2 = e.clone()
        e2[0, 4] += 1.0
        h2 = m.blocks[0](e2, None, causal)
        changed = (h1 - h2).abs().amax(-1)[0]
        assert (changed[:4] == 0).all() == causal
        assert changed[4] > 0


def test_trains_through_recbole_trainer(tmp_path):
    try:
        from bench.recbole_path import run_recbole_trainer
    except ImportError:
        pytest.skip("bench.recbole_path.run_recbole_trainer not available")
    from models.diffurec import DiffuRec

    small = next_item_rule(60, 20, min_len=5, max_len=10, seed=1)
    params = resolve_params(get_spec("DiffuRec"), {**SMALL, "train_batch_size": 64, "eval_batch_size": 64})
    torch.manual_seed(0)
    out = run_recbole_trainer(DiffuRec, params, small, epochs=1, workdir=tmp_path, max_batches=3)
    assert np.isfinite(out["loss"][0])
    assert 0.0 <= out["test"]["hit@10"] <= 1.0


def test_learns_the_next_item_rule():
    """HR@10 >= 0.9 on the test targets of a deterministic successor rule."""
    seqs = next_item_rule(n_users=300, n_items=50)
    hist, tgt = [], []
    for u in range(seqs.n_users):
        s = [int(x) for x in seqs.sequence(u)]
        for j in range(1, len(s) - 2):  # every prefix of the training part
            hist.append(s[:j])
            tgt.append(s[j])
    test_hist = [[int(x) for x in seqs.sequence(u)][:-1] for u in range(seqs.n_users)]

    def batch_of(hs, ts):
        seq = torch.zeros(len(hs), max(map(len, hs)), dtype=torch.long)
        for i, h in enumerate(hs):
            seq[i, : len(h)] = torch.tensor(h)
        return Interaction({"item_id_list": seq, "item_length": torch.tensor([len(h) for h in hs]),
                            "item_id": torch.tensor(ts), "user_id": torch.arange(1, len(hs) + 1)})

    torch.manual_seed(0)
    m = build(n_items=seqs.n_items, hidden_size=32, inner_size=64, n_layers=2, n_heads=2)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    for _ in range(8):
        m.train()
        order = rng.permutation(len(hist))
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = m.calculate_loss(batch_of([hist[k] for k in idx], [tgt[k] for k in idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    m.eval()
    with torch.no_grad():
        test = batch_of(test_hist, [int(x) for x in seqs.test_items])
        scores = m.full_sort_predict(test)
    scores[:, 0] = -float("inf")
    target = scores.gather(1, test["item_id"][:, None])
    rank = (scores > target).sum(1)
    hr10 = (rank < 10).float().mean().item()
    assert hr10 >= 0.9, hr10


def test_training_gradients_are_bit_identical_on_two_threads():
    """Repeated diffusion steps in a batch once reached the step MLP through an indexing
    backward whose accumulation order depended on thread timing (runs differed)."""
    model = build(hidden_size=64, inner_size=128)
    model.train()
    batch = make_batch(torch.randint(1, 12, (1024,), generator=torch.Generator().manual_seed(3)))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(4):
            torch.manual_seed(5)
            model.zero_grad()
            model.calculate_loss(batch).backward()
            grads.append([p.grad.clone() for p in model.parameters() if p.grad is not None])
    finally:
        torch.set_num_threads(threads)
    for other in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], other))
