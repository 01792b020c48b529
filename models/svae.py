"""SVAE: Sachdeva, Manco, Ritacco & Pudi, "Sequential Variational Autoencoders for
Collaborative Filtering", WSDM 2019.

Equations implemented (named by content; architecture as in the authors' code
noveens/svae_cf):

- Encoder: item embedding -> GRU (the recurrent state h_t summarises x_{1:t})
  -> tanh layer -> linear head giving the per-step Gaussian posterior
  q(z_t | x_{1:t}) = N(mu_t, diag(sigma_t^2)); z_t = mu_t + sigma_t * eps,
  eps ~ N(0, I) (reparameterisation).
- Decoder: z_t -> tanh layer -> logits over all items, a multinomial
  p(x_{t+1..t+k} | z_t).
- Objective: the paper's negative ELBO summed over time steps, with its *next-k*
  likelihood variant (each step predicts the next k items, multinomial
  log-likelihood), plus anneal * KL(q(z_t | x_{1:t}) || N(0, I)).  As in the authors'
  code the likelihood of a step is divided by k, and the KL weight is annealed linearly (as in Liang et al. 2018's
  Mult-VAE) up to ``kl_max``.

Adaptations to this harness:

- Leave-one-out next-item prediction with full ranking over all items: the authors'
  code evaluates held-out users (fold-in of 80% of the history, rank the remaining 20%);
  here every training instance is a prefix ``item_id_list`` = h[0..n-1] with target
  ``item_id`` = h[n] (the harness feeds every prefix n = 1..N of a user's sequence).
- One decoded position per instance (the per-sequence sum over time steps is spread
  over the prefixes): an instance decodes only step t = max(n - k, 0) with its window
  h[t+1 .. min(t+k, n)] (the target included where it falls in the window).  Across the
  prefixes n = k..N of a user, every step t = 0..N-k gets its full next-k window exactly
  once, so one epoch counts each step's next-k term once, as the per-sequence objective
  does.  Differences: step 0 also appears with partial windows h[1..n] for the prefixes
  n < k, and the last k-1 steps (whose windows would run past the training sequence)
  are not decoded.  Decoding every real step of every prefix instead would count step t
  once per prefix containing it (quadratic cost and weighting).  The encoder still runs
  over the whole history; it is causal (GRU), so z_t depends only on h[0..t] and
  trailing padding changes nothing; a history cut to
  ``MAX_ITEM_LIST_LENGTH`` keeps the same absolute step t = n - k.
  A window item repeated inside the window counts once (multi-hot targets, as in the
  authors' code); the divisor stays k.  The loss is the mean over instances of
  (-log-likelihood of the window / k + anneal * KL(q(z_t | h[0..t]) || N(0, I))), so
  each step's KL gets the same weight as its likelihood term (the authors average the
  KL over the T steps of a sequence while summing the likelihood, i.e. weigh it 1/T of
  this; a user's T is unknown to a single prefix instance).
- Scoring (``full_sort_predict``): decoder logits at the last real position, computed
  from the posterior mean mu (no sampling at evaluation, so scores are deterministic).
  Already-seen items are not masked out (the harness ranks every item).
- KL annealing counts optimizer steps inside the model (a buffer incremented by every
  ``calculate_loss`` call in training mode), weight = kl_max * min(1, step /
  anneal_steps).  The authors' slope 1/200000 with cap 0.2 reaches the cap after 40000
  steps (one user per step there); ``anneal_steps`` defaults to that count.
- The authors sample z with sigma = exp(log_sigma) but compute the KL as if that head
  were log(sigma^2); here the head is the log-variance in both places (standard VAE).
- The model keeps its own objective (the next-k negative ELBO); the harness's
  ``loss_type`` is ignored.
- Optimizer settings (Adam, learning rate, weight decay: the authors use 5e-3) are the
  harness's; the reference trained one user per batch, here batches hold prefixes.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender


class SVAE(SequentialRecommender):
    """GRU encoder -> per-step Gaussian latent -> MLP decoder over all items."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.rnn_size = config["rnn_size"]
        self.hidden_size = config["hidden_size"]
        self.latent_size = config["latent_size"]
        self.next_k = int(config["next_k"])
        self.kl_max = float(config["kl_max"])
        self.anneal_steps = int(config["anneal_steps"])

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.gru = nn.GRU(self.embedding_size, self.rnn_size, batch_first=True)
        self.enc_hidden = nn.Linear(self.rnn_size, self.hidden_size)
        self.enc_latent = nn.Linear(self.hidden_size, 2 * self.latent_size)
        self.dec_hidden = nn.Linear(self.latent_size, self.hidden_size)
        self.dec_out = nn.Linear(self.hidden_size, self.n_items)
        for layer in (self.enc_hidden, self.enc_latent, self.dec_hidden, self.dec_out):
            nn.init.xavier_normal_(layer.weight)
        # optimizer steps taken so far (drives the KL annealing; saved with the model)
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))

    # ------------------------------------------------------------------ model
    def kl_weight(self) -> float:
        """Current KL weight: kl_max * min(1, steps / anneal_steps)."""
        if self.anneal_steps <= 0:
            return self.kl_max
        return self.kl_max * min(1.0, float(self.train_steps) / self.anneal_steps)

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
        weight = self.kl_weight()
        if self.training:
            self.train_steps += 1
        return nll + weight * kl

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
