"""SVAE, ACVAE and STOSA: the model contract plus one model-specific check each."""
import math

import bench  # noqa: F401  (compat patches before any RecBole import)
import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from bench import zoo

N_ITEMS, N_USERS = 31, 20  # item ids 1..30, 0 = padding
MODELS = ["SVAE", "ACVAE", "STOSA"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build(name, n_users=N_USERS, **overrides):
    spec = zoo.get_spec(name)
    params = zoo.resolve_params(spec, {"MAX_ITEM_LIST_LENGTH": 12}, overrides)
    model, _ = zoo.build_model(spec, params, N_ITEMS, n_users)
    return model


def batch(width=None, seed=0):
    """Six right-padded histories of lengths 1..7, trimmed to the longest unless width."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([1, 3, 7, 2, 5, 4])
    width = int(lengths.max()) if width is None else width
    seq = torch.randint(1, N_ITEMS, (len(lengths), 12), generator=g)
    seq[torch.arange(12).view(1, -1) >= lengths.view(-1, 1)] = 0
    seq = seq[:, :width]
    return Interaction({
        "item_id_list": seq,
        "item_length": lengths,
        "item_id": torch.randint(1, N_ITEMS, (len(lengths),), generator=g),
        "user_id": torch.arange(1, len(lengths) + 1),
    })


@pytest.mark.parametrize("name", MODELS)
def test_loss_finite_and_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build(name)
    model.train()
    loss = model.calculate_loss(batch())
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"no gradient reaches {missing}"


@pytest.mark.parametrize("name", MODELS)
def test_scores_shape_and_predict_agrees(name):
    torch.manual_seed(0)
    model = build(name).eval()
    inter = batch()
    with torch.no_grad():
        scores = model.full_sort_predict(inter)
        single = model.predict(inter)
    assert scores.shape == (6, N_ITEMS) and torch.isfinite(scores).all()
    expected = scores.gather(1, inter["item_id"].view(-1, 1)).squeeze(1)
    torch.testing.assert_close(single, expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_trailing_padding_changes_no_score(name):
    torch.manual_seed(0)
    model = build(name).eval()
    with torch.no_grad():
        trimmed = model.full_sort_predict(batch())
        padded = model.full_sort_predict(batch(width=12))
    torch.testing.assert_close(trimmed, padded, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_seed(name):
    def run():
        torch.manual_seed(123)
        model = build(name)
        model.train()
        loss = model.calculate_loss(batch())
        loss.backward()
        model.eval()
        with torch.no_grad():
            return loss.detach(), model.full_sort_predict(batch())

    (loss_a, scores_a), (loss_b, scores_b) = run(), run()
    assert torch.equal(loss_a, loss_b) and torch.equal(scores_a, scores_b)


# ----------------------------------------------------------------------------- SVAE
def reference_epoch_anneals(n_users, slope=1 / 200000, cap=0.2):
    """The anneal each user of one epoch is trained with, replaying the reference's
    ``train()`` loop (noveens/svae_cf, main_svae.ipynb): counter and anneal start at 0
    every epoch, and the anneal is updated after each user's step."""
    anneal, update_count, used = 0.0, 0.0, []
    for _ in range(n_users):
        used.append(anneal)
        anneal = min(cap, update_count * slope)
        update_count += 1.0
    return used


@pytest.mark.parametrize("n_users, steps_per_user", [(22363, 5.876), (6040, 162.6), (60000, 3.0)])
def test_svae_kl_weight_is_the_references_mean_per_step_weight(n_users, steps_per_user):
    """Per step, the reference weighs KL by anneal / T; its mean over an epoch's steps is
    mean(anneal) / T_bar.  The weight does not grow with training steps (the reference
    restarts its schedule every epoch).  60,000 users reach the cap within the epoch."""
    used = reference_epoch_anneals(n_users)
    expected = sum(used) / len(used) / steps_per_user
    model = build("SVAE", n_users=n_users + 1, kl_steps_per_user=steps_per_user)
    assert model.kl_weight() == pytest.approx(expected, rel=1e-9)
    model.train()
    for _ in range(3):
        model.calculate_loss(batch())
    assert model.kl_weight() == pytest.approx(expected, rel=1e-9)


def test_svae_kl_weight_on_the_suites_datasets():
    """The values the docstring derives: Beauty, Toys, ML-1M (users, T_bar) -> weight."""
    for n_users, t_bar, weight in [(22363, 5.876, 0.00951), (19412, 5.634, 0.00861),
                                   (6040, 162.6, 9.28e-5)]:
        model = build("SVAE", n_users=n_users + 1, kl_steps_per_user=t_bar)
        assert model.kl_weight() == pytest.approx(weight, rel=2e-3)


def test_svae_next_k_windows_use_known_items_only():
    model = build("SVAE", next_k=3)
    seq = torch.tensor([[3, 4, 3, 0, 0], [7, 0, 0, 0, 0], [5, 6, 7, 8, 9]])
    step, windows, valid = model.next_k_targets(seq, torch.tensor([3, 1, 5]),
                                                torch.tensor([4, 8, 2]))
    # known sequences: 3 4 3 | 4   and   7 | 8   and   5 6 7 8 9 | 2
    assert step.tolist() == [0, 0, 2]  # max(n - k, 0)
    assert windows[0].tolist() == [4, 3, 4] and valid[0].tolist() == [True, True, False]
    assert windows[1].tolist() == [8, 0, 0] and valid[1].tolist() == [True, False, False]
    assert windows[2].tolist() == [8, 9, 2] and valid[2].tolist() == [True, True, True]


def test_svae_prefixes_decode_each_full_window_once():
    """Over all prefixes of one user (one epoch), each step t <= N-k gets its full next-k
    window exactly once; step 0 also appears with the partial windows of prefixes n < k."""
    k = 3
    model = build("SVAE", next_k=k)
    full = torch.arange(11, 19)  # s[0..N], N = 7, distinct items
    N = len(full) - 1
    seen = []
    for n in range(1, N + 1):
        seq = torch.zeros(1, N, dtype=torch.long)
        seq[0, :n] = full[:n]
        step, windows, valid = model.next_k_targets(seq, torch.tensor([n]), full[n].view(1))
        seen.append((int(step), tuple(windows[0][valid[0]].tolist())))
    full_windows = [(t, w) for t, w in seen if len(w) == k]
    assert full_windows == [(t, tuple(full[t + 1: t + 1 + k].tolist())) for t in range(N - k + 1)]
    partial = [(t, w) for t, w in seen if len(w) < k]
    assert partial == [(0, tuple(full[1: n + 1].tolist())) for n in range(1, k)]


def test_svae_loss_decodes_one_step_per_instance():
    """The loss equals the next-k NLL / k + KL at step max(n-k, 0), recomputed by hand."""
    torch.manual_seed(0)
    model = build("SVAE", next_k=2, kl_anneal_slope=0.02, kl_steps_per_user=0.5)
    weight = model.kl_weight()
    assert weight > 0.2  # large enough for the KL term to show in the comparison below
    model.train()
    inter = batch()
    torch.manual_seed(7)
    loss = model.calculate_loss(inter)
    torch.manual_seed(7)
    mu, logvar = model.encode(inter["item_id_list"])
    expected = []
    for b, n in enumerate(inter["item_length"].tolist()):
        t = max(n - 2, 0)
        known = inter["item_id_list"][b, :n].tolist() + [int(inter["item_id"][b])]
        window = list(dict.fromkeys(known[t + 1: t + 3]))
        m, lv = mu[b, t], logvar[b, t]
        expected.append((m, lv, window))
    z = torch.stack([m + torch.exp(0.5 * lv) * torch.randn_like(m) for m, lv, _ in expected])
    log_probs = torch.log_softmax(model.decode(z), -1)
    nll = -sum(log_probs[i, w].sum() for i, (_, _, w) in enumerate(expected)) / (2 * 6)
    kl = sum(0.5 * (lv.exp() + m.pow(2) - 1 - lv).sum() for m, lv, _ in expected) / 6
    torch.testing.assert_close(loss, nll + weight * kl, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------- ACVAE
def test_acvae_discriminator_gets_its_own_ascent_gradient():
    """One backward of the total loss gives T the gradient of its own objective only,
    and a step along it increases that objective (lowers its logistic loss)."""
    torch.manual_seed(0)
    model = build("ACVAE")
    model.train()
    disc = [p for p in model.discriminator.parameters()]
    inter = batch()

    torch.manual_seed(1)
    terms = model.loss_terms(inter)
    total = (terms["reconstruction"] + model.alpha * terms["adversarial_kl"]
             + model.beta * terms["contrastive"] + terms["discriminator"])
    grad_total = torch.autograd.grad(total, disc, retain_graph=True)
    grad_own = torch.autograd.grad(terms["discriminator"], disc, retain_graph=True)
    for a, b in zip(grad_total, grad_own):
        torch.testing.assert_close(a, b)
    # the generator's T term still reaches the encoder, but never T's parameters
    gen_grads = torch.autograd.grad(terms["adversarial_kl"], disc + [model.encoder.head.weight],
                                    allow_unused=True)
    assert all(g is None or not g.any() for g in gen_grads[:-1])
    assert gen_grads[-1] is not None and gen_grads[-1].abs().sum() > 0

    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in grad_total))
    with torch.no_grad():
        for p, g in zip(disc, grad_total):
            p -= 1e-2 * g / norm
    torch.manual_seed(1)  # same noise, dropout masks and prior samples
    after = model.loss_terms(inter)["discriminator"]
    assert after < terms["discriminator"]


def test_acvae_reconstruction_is_next_item_at_last_step():
    """With the encoder's noise and dropout off, the reconstruction term is the mean
    cross-entropy of the target under the scores ``full_sort_predict`` ranks with."""
    torch.manual_seed(0)
    model = build("ACVAE").eval()
    inter = batch()
    with torch.no_grad():
        terms = model.loss_terms(inter)
        scores = model.full_sort_predict(inter)
        padded = model.loss_terms(batch(width=12))["reconstruction"]
    expected = torch.nn.functional.cross_entropy(scores, inter["item_id"])
    torch.testing.assert_close(terms["reconstruction"], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(padded, expected, rtol=1e-5, atol=1e-5)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in terms.values())


def param_names(model, params):
    by_id = {id(p): n for n, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


def test_acvae_optimizers_are_the_authors_split():
    """AdamW(1e-3, wd 1e-2) on the VAE, SGD(3e-4, wd 0.1) on encoder + critic, SGD(5e-4,
    wd 0.1) on T (ACVAE-PyTorch train.py); every parameter is stepped, and only the
    encoder's by two optimizers, as in the reference."""
    model = build("ACVAE")
    vae, critic, disc = model.configure_optimizers()
    assert type(vae) is torch.optim.AdamW and type(critic) is torch.optim.SGD
    assert type(disc) is torch.optim.SGD
    settings = [(o.param_groups[0]["lr"], o.param_groups[0]["weight_decay"]) for o in (vae, critic, disc)]
    assert settings == [(1e-3, 1e-2), (3e-4, 0.1), (5e-4, 0.1)]
    names = [param_names(model, [p for g in o.param_groups for p in g["params"]])
             for o in (vae, critic, disc)]
    every = {n for n, _ in model.named_parameters()}
    assert set().union(*names) == every
    assert names[2] == {n for n in every if n.startswith("discriminator.")}
    assert names[1] == {n for n in every if n.startswith(("encoder.", "critic."))}
    assert names[0] == {n for n in every if not n.startswith(("discriminator.", "critic."))}
    shared = (names[0] & names[1]) | (names[0] & names[2]) | (names[1] & names[2])
    assert shared == {n for n in every if n.startswith("encoder.")}


def test_acvae_engine_step_moves_the_discriminator_by_its_sgd():
    """One backward of the loss, then every optimizer steps (the engine's loop): T moves
    by exactly SGD(lr, L2) on the gradient of its own objective."""
    torch.manual_seed(0)
    model = build("ACVAE")
    model.train()
    opts = model.configure_optimizers()
    disc = list(model.discriminator.parameters())
    before = [p.detach().clone() for p in disc]
    torch.manual_seed(1)
    own = torch.autograd.grad(model.loss_terms(batch())["discriminator"], disc)
    torch.manual_seed(1)  # same noise, dropout masks and prior samples
    loss = model.calculate_loss(batch())
    for opt in opts:
        opt.zero_grad(set_to_none=True)
    loss.backward()
    for opt in opts:
        opt.step()
    for p, p0, g in zip(disc, before, own):
        torch.testing.assert_close(p.detach(), p0 - 5e-4 * (g + 0.1 * p0), rtol=1e-5, atol=1e-7)


def test_acvae_loss_scale_multiplies_every_players_sgd_step():
    """loss_scale = T_bar turns the mean over instances into the authors' per-user sum: every
    gradient, hence each SGD step on the encoder, the critic and T, is T_bar times larger."""
    grads = {}
    for scale in (1.0, 5.876):
        torch.manual_seed(0)
        model = build("ACVAE", loss_scale=scale)
        model.train()
        torch.manual_seed(1)  # same noise, dropout masks and prior samples
        players = list(model.critic.parameters()) + list(model.discriminator.parameters())
        grads[scale] = torch.autograd.grad(model.calculate_loss(batch()), players)
    for a, b in zip(grads[1.0], grads[5.876]):
        torch.testing.assert_close(b, 5.876 * a, rtol=1e-4, atol=1e-8)
    with pytest.raises(ValueError, match="loss_scale"):
        build("ACVAE", loss_scale=0)


def test_acvae_single_optimizer_mode():
    model = build("ACVAE", optimizers="single", learning_rate=2e-3, weight_decay=0.0)
    (opt,) = model.configure_optimizers()
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["lr"] == 2e-3
    assert len(opt.param_groups[0]["params"]) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="optimizers"):
        build("ACVAE", optimizers="three")


# ---------------------------------------------------------------------------- STOSA
def naive_w2(mean1, cov1, mean2, cov2):
    """W2^2 of N(m1, S1), N(m2, S2) from the general formula with full matrices:
    ||m1 - m2||^2 + tr(S1 + S2 - 2 (S2^1/2 S1 S2^1/2)^1/2)."""
    s1, s2 = torch.diag(cov1.double()), torch.diag(cov2.double())

    def sqrtm(a):
        vals, vecs = torch.linalg.eigh(a)
        return vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T

    r2 = sqrtm(s2)
    cross = sqrtm(r2 @ s1 @ r2)
    return float((mean1 - mean2).double().pow(2).sum() + torch.trace(s1 + s2 - 2 * cross))


def test_stosa_wasserstein_helpers_match_direct_computation():
    from models.stosa import wasserstein_distance, wasserstein_distance_matmul

    g = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(3, 8, generator=g), torch.randn(4, 8, generator=g)
    c1, c2 = torch.rand(3, 8, generator=g) + 0.1, torch.rand(4, 8, generator=g) + 0.1
    pairwise = wasserstein_distance_matmul(m1, c1, m2, c2)
    assert pairwise.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            direct = naive_w2(m1[i], c1[i], m2[j], c2[j])
            assert float(pairwise[i, j]) == pytest.approx(direct, rel=1e-4, abs=1e-4)
            assert float(wasserstein_distance(m1[i], c1[i], m2[j], c2[j])) == pytest.approx(
                direct, rel=1e-4, abs=1e-4)


def test_stosa_ranking_score_is_negative_w2_to_each_item():
    torch.manual_seed(0)
    model = build("STOSA").eval()
    inter = batch()
    with torch.no_grad():
        scores = model.full_sort_predict(inter)
        mean, cov = model.forward(inter["item_id_list"])
        last = inter["item_length"] - 1
        for b in range(len(last)):
            m, c = mean[b, last[b]], cov[b, last[b]]
            for item in (1, 7, 30):
                im = model.item_mean_embedding.weight[item]
                ic = torch.nn.functional.elu(model.item_cov_embedding.weight[item]) + 1
                expected = -naive_w2(m, c, im, ic)
                assert float(scores[b, item]) == pytest.approx(expected, rel=1e-4, abs=1e-3)


def test_stosa_negatives_come_from_the_global_rng():
    model = build("STOSA")
    model.train()
    torch.manual_seed(5)
    a = model.calculate_loss(batch())
    torch.manual_seed(5)
    b = model.calculate_loss(batch())
    torch.manual_seed(6)
    c = model.calculate_loss(batch())
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_stosa_trains_each_transition_once_per_epoch():
    """Over the harness's training instances (every prefix of every user), the loss terms
    of one epoch are exactly the training transitions, each once (the authors' loader
    yields each user's sequence once per epoch)."""
    from bench import engine
    from bench.synthetic import next_item_rule

    seqs = next_item_rule(30, N_ITEMS - 1, min_len=5, max_len=12, seed=3)
    model = build("STOSA")
    inst = engine.training_instances(seqs, 12)
    trained = []
    for start in range(0, len(inst), 7):
        idx = np.arange(start, min(start + 7, len(inst)))
        positions, positives = model.trained_transitions(engine.make_batch(inst, idx))
        for i, pos, item in zip(idx, positions.tolist(), positives.tolist()):
            step = int(inst.start[i]) + pos  # absolute index of the transition's source item
            trained.append((int(inst.user[i]), step, item))
    transitions = [(u + 1, int(seqs.offsets[u]) + t, int(seqs.items[seqs.offsets[u] + t + 1]))
                   for u in range(seqs.n_users) for t in range(int(seqs.lengths[u]) - 3)]
    assert len(trained) == len(transitions) == len(inst)
    assert sorted(trained) == sorted(transitions)


def test_stosa_loss_is_bpr_plus_pvn_at_the_last_position():
    """calculate_loss trains the last real position against the target and one negative
    drawn from the global RNG (no dropout in eval mode, so it can be recomputed)."""
    model = build("STOSA", pvn_weight=0.5).eval()
    inter = batch()
    torch.manual_seed(11)
    loss = model.calculate_loss(inter)
    torch.manual_seed(11)
    neg = torch.randint(1, N_ITEMS, (6,))
    terms = []
    with torch.no_grad():
        mean, cov = model.forward(inter["item_id_list"])
        for b, n in enumerate(inter["item_length"].tolist()):
            m, c = mean[b, n - 1], cov[b, n - 1]
            dist = {}
            for name, item in (("pos", int(inter["item_id"][b])), ("neg", int(neg[b]))):
                im = model.item_mean_embedding.weight[item]
                ic = torch.nn.functional.elu(model.item_cov_embedding.weight[item]) + 1
                dist[name] = (im, ic, naive_w2(m, c, im, ic))
            pvn = naive_w2(dist["pos"][0], dist["pos"][1], dist["neg"][0], dist["neg"][1])
            bpr = math.log1p(math.exp(dist["pos"][2] - dist["neg"][2]))  # -log sigma(neg - pos)
            terms.append(bpr + 0.5 * max(0.0, dist["pos"][2] - pvn))
    assert float(loss) == pytest.approx(sum(terms) / len(terms), rel=1e-4, abs=1e-4)


def embedding_layer_mean(model, item_seq):
    """STOSA's mean stream before any layer: ELU(LayerNorm(item + position)) (eval mode)."""
    positions = torch.arange(item_seq.shape[1])
    x = model.item_mean_embedding(item_seq) + model.position_mean_embedding(positions)
    return torch.nn.functional.elu(model.layer_norm(x))


def test_stosa_released_mean_stream_skips_the_layers():
    """mean_stream: released reproduces the authors' encoder (maen_hidden_states typo):
    the output mean is the embedding-layer mean and the mean-side layer weights get no
    gradient; the paper's default passes the mean through the layers."""
    inter = batch()
    torch.manual_seed(0)
    paper = build("STOSA", n_layers=2).eval()
    torch.manual_seed(0)
    released = build("STOSA", n_layers=2, mean_stream="released").eval()
    with torch.no_grad():
        paper_mean, _ = paper.forward(inter["item_id_list"])
        released_mean, _ = released.forward(inter["item_id_list"])
        base = embedding_layer_mean(released, inter["item_id_list"])
    torch.testing.assert_close(released_mean, base)
    assert not torch.allclose(paper_mean, base, atol=1e-3)

    released.train()
    torch.manual_seed(1)
    released.calculate_loss(inter).backward()
    silent = {n for n, p in released.named_parameters() if p.grad is None or not p.grad.any()}
    mean_side = {n for n, _ in released.named_parameters()
                 if any(k in n for k in ("mean_value", "mean_dense", "mean_ffn"))}
    assert mean_side and silent == mean_side
    with pytest.raises(ValueError, match="mean_stream"):
        build("STOSA", mean_stream="typo")
