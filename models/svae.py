"""SVAE: Sachdeva, Manco, Ritacco & Pudi, "Sequential Variational Autoencoders for
Collaborative Filtering", WSDM 2019.

Equations implemented (named by content; architecture as in the authors' code, see
"Reference" below):

- Encoder: item embedding -> GRU (the recurrent state h_t summarises x_{1:t})
  -> tanh layer -> linear head giving the per-step Gaussian posterior
  q(z_t | x_{1:t}) = N(mu_t, diag(sigma_t^2)); z_t = mu_t + sigma_t * eps,
  eps ~ N(0, I) (reparameterisation).
- Decoder: z_t -> tanh layer -> logits over all items, a multinomial
  p(x_{t+1..t+k} | z_t).
- Objective: the paper's negative ELBO with its *next-k* likelihood variant (each step
  predicts the next k items, multinomial log-likelihood, divided by k) plus a weighted
  KL(q(z_t | x_{1:t}) || N(0, I)).

Reference: noveens/svae_cf, commit 995c29308ac98db13210da50334f6c4f050c4480,
``main_svae.ipynb`` (hyper-parameter cell; ``VAELoss``; ``train()``).  Per user (batch =
one user, T = training items - 1 steps) the reference minimises
    sum_t NLL_t / k  +  anneal * (1/T) sum_t KL_t
(``VAELoss``: the likelihood is summed over the steps, ``torch.mean`` over the T rows of
``mu_q`` averages the KL), so a step's KL weighs anneal / T against its likelihood.
``train()`` starts with ``update_count = 0`` and ``anneal = 0`` at *every* call, i.e.
every epoch, and sets anneal = min(0.2, update_count / 200000) after each user: within
an epoch the i-th user (0-based) is trained with a_i = min(cap, max(i - 1, 0) * slope),
slope = 1/200000, cap = 0.2.  The cap needs 40,000 users in one epoch; an ML-1M epoch has
about 4,500 training users there, so its anneal never exceeds about 0.023.
Derivation of the weight used here (``kl_weight``): over one epoch the reference gives
user u's steps a total KL weight of a_i(u) (T_u steps at a_i / T_u each); its expected
value over the random user order is A = mean_i a_i over the U users of an epoch.
Summed over users that is U * A, spread over sum_u T_u steps, so the mean per-step KL
weight is
    w = A / T_bar,   T_bar = sum_u T_u / U   (``kl_steps_per_user``),
which is what every decoded step gets here.  U is the dataset's user count (every user
trains under leave-one-out; ``dataset.user_num - 1``, the full dataset in every
profile), T_bar its mean training length minus one: Beauty U = 22,363, T_bar = 5.876,
A = 0.0559, w = 0.00951; Toys 19,412 / 5.634 / 0.0485 / 0.00861; ML-1M 6,040 / 162.6 /
0.0151 / 9.28e-5.  T_bar is a YAML value (Beauty's) that profiles override per dataset.
Remaining deviations, one line each:

- each training prefix decodes one step (see below), so each full next-k window counts
  once per epoch, as in the reference; the last k-1 steps (windows shorter than k) are
  not decoded and step 0 also gets the partial windows of prefixes shorter than k;
- the KL weight is the same A / T_bar for every step; the reference's is a_i / T_u,
  which varies with the user's length and place in the epoch (equal total per epoch);
- the KL uses the head as log(sigma^2) when sampling too (the reference samples with
  sigma = exp(head) but computes the KL as if the head were log(sigma^2));
- the likelihood divisor is k (the reference divides by the number of distinct items in
  the first step's window, which is k unless the sequence is shorter or repeats);
- optimizer: the harness's (Adam, lr 1e-3, no weight decay, batches of prefixes); the
  reference uses Adam at its default lr 1e-3 with weight decay 5e-3, one user per batch;
- evaluation: leave-one-out with full ranking of every item, seen items not masked (the
  reference folds in 80 % of held-out users' histories, ranks the rest, masks seen items).

Adaptations to this harness:

- Leave-one-out next-item prediction with full ranking over all items: every training
  instance is a prefix ``item_id_list`` = h[0..n-1] with target ``item_id`` = h[n]
  (the harness feeds every prefix n = 1..N of a user's sequence).
- One decoded position per instance (the per-sequence sum over time steps is spread
  over the prefixes): an instance decodes only step t = max(n - k, 0) with its window
  h[t+1 .. min(t+k, n)] (the target included where it falls in the window).  Across the
  prefixes n = k..N of a user, every step t = 0..N-k gets its full next-k window exactly
  once, so one epoch counts each step's next-k term once, as the per-sequence objective
  does.  Decoding every real step of every prefix instead would count step t once per
  prefix containing it (quadratic cost and weighting).  The encoder still runs over the
  whole history; it is causal (GRU), so z_t depends only on h[0..t] and trailing padding
  changes nothing; a history cut to ``MAX_ITEM_LIST_LENGTH`` keeps the same absolute
  step t = n - k.  A window item repeated inside the window counts once (multi-hot
  targets, as in the authors' code); the divisor stays k.  The loss is the mean over
  instances of (-log-likelihood of the window / k + w * KL(q(z_t | h[0..t]) || N(0, I))).
- Scoring (``full_sort_predict``): decoder logits at the last real position, computed
  from the posterior mean mu (no sampling at evaluation, so scores are deterministic).
- The model keeps its own objective (the next-k negative ELBO); the harness's
  ``loss_type`` is ignored.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender


def reference_anneal_mean(n_users: int, slope: float, cap: float) -> float:
    """Mean over one epoch of the reference's anneal, a_i = min(cap, max(i - 1, 0) * slope).

    The reference trains one user per step and restarts its counter every epoch; the
    i-th user (0-based) of an epoch of ``n_users`` is trained with a_i.
    """
    if n_users <= 0:
        return 0.0
    steps = torch.arange(n_users, dtype=torch.float64)
    return float(torch.clamp((steps - 1.0).clamp_min(0.0) * slope, max=cap).mean())


def reference_kl_weight(n_users: int, slope: float, cap: float, steps_per_user: float) -> float:
    """Per-step KL weight matching the reference's over an epoch: A / T_bar (see docstring)."""
    if steps_per_user <= 0:
        raise ValueError(f"SVAE: kl_steps_per_user must be > 0, got {steps_per_user}")
    return reference_anneal_mean(n_users, slope, cap) / steps_per_user


class SVAE(SequentialRecommender):
    """GRU encoder -> per-step Gaussian latent -> MLP decoder over all items."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.rnn_size = config["rnn_size"]
        self.hidden_size = config["hidden_size"]
        self.latent_size = config["latent_size"]
        self.next_k = int(config["next_k"])
        self.kl_weight_per_step = reference_kl_weight(
            n_users=dataset.user_num - 1,  # ids are 1-based, 0 is padding
            slope=float(config["kl_anneal_slope"]), cap=float(config["kl_anneal_cap"]),
            steps_per_user=float(config["kl_steps_per_user"]))

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.gru = nn.GRU(self.embedding_size, self.rnn_size, batch_first=True)
        self.enc_hidden = nn.Linear(self.rnn_size, self.hidden_size)
        self.enc_latent = nn.Linear(self.hidden_size, 2 * self.latent_size)
        self.dec_hidden = nn.Linear(self.latent_size, self.hidden_size)
        self.dec_out = nn.Linear(self.hidden_size, self.n_items)
        for layer in (self.enc_hidden, self.enc_latent, self.dec_hidden, self.dec_out):
            nn.init.xavier_normal_(layer.weight)

    # ------------------------------------------------------------------ model
    def kl_weight(self) -> float:
        """The KL weight of every decoded step, A / T_bar (module docstring)."""
        return self.kl_weight_per_step

    def encode(self, item_seq):
        """(B, L) items -> posterior mean and log-variance, each (B, L, latent)."""
        rnn_out, _ = self.gru(self.item_embedding(item_seq))
        stats = self.enc_latent(torch.tanh(self.enc_hidden(rnn_out)))
        mu, logvar = stats.chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z):
        """(..., latent) -> (..., n_items) logits."""
        return self.dec_out(torch.tanh(self.dec_hidden(z)))

    def reparameterize(self, mu, logvar):
        return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)

    # ------------------------------------------------------------------ loss
    def decoded_step(self, item_len):
        """(B,) the one step decoded per instance: t = max(n - k, 0), n = history length."""
        return (item_len - self.next_k).clamp_min(0)

    def next_k_targets(self, item_seq, item_len, target):
        """The decoded step t of every instance, its (B, k) next-k window and validity mask.

        The known sequence is the prefix followed by the target (h[0..n]); the window of
        step t is h[t+1 .. t+k]; entries past h[n] or repeating an earlier entry of the
        same window are invalid.
        """
        B = item_seq.shape[0]
        k = self.next_k
        known = torch.cat([item_seq, item_seq.new_zeros(B, k + 1)], dim=1)
        known = known.scatter(1, item_len.view(-1, 1), target.view(-1, 1))
        step = self.decoded_step(item_len)
        index = step.view(B, 1) + torch.arange(1, k + 1, device=item_seq.device).view(1, k)
        windows = known.gather(1, index)  # (B, k)
        valid = (windows > 0) & (index <= item_len.view(B, 1))
        for j in range(1, k):
            repeated = (windows[:, j : j + 1] == windows[:, :j]).any(-1)
            valid[:, j] &= ~repeated
        return step, windows, valid

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_len = interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        B = item_seq.shape[0]

        step, windows, valid = self.next_k_targets(item_seq, item_len, target)
        mu, logvar = self.encode(item_seq)  # causal over the whole history
        mu_t, logvar_t = self.gather_indexes(mu, step), self.gather_indexes(logvar, step)
        z = self.reparameterize(mu_t, logvar_t)
        log_probs = F.log_softmax(self.decode(z), dim=-1)  # (B, n_items): one step each
        nll = -(log_probs.gather(1, windows) * valid).sum() / (self.next_k * B)

        kl = 0.5 * (torch.exp(logvar_t) + mu_t.pow(2) - 1.0 - logvar_t).sum(-1).mean()
        return nll + self.kl_weight() * kl

    # ------------------------------------------------------------------ scoring
    def _last_logits(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        mu, _ = self.encode(item_seq)
        mu_last = self.gather_indexes(mu, interaction[self.ITEM_SEQ_LEN] - 1)
        return self.decode(mu_last)

    def predict(self, interaction):
        logits = self._last_logits(interaction)
        return logits.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)

    def full_sort_predict(self, interaction):
        return self._last_logits(interaction)
