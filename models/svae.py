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
  code the likelihood is summed over time steps and divided by k, the KL is averaged
  over time steps, and the KL weight is annealed linearly (as in Liang et al. 2018's
  Mult-VAE) up to ``kl_max``.

Adaptations to this harness:

- Leave-one-out next-item prediction with full ranking over all items: the authors'
  code evaluates held-out users (fold-in of 80% of the history, rank the remaining 20%);
  here every training instance is a prefix ``item_id_list`` with target ``item_id``.
  The next-k targets of step t come from the known sequence = the prefix followed by
  the target; steps whose k-window runs past the known items use the items that are
  known (the last step predicts only the target).  A window item repeated inside the
  window counts once (multi-hot targets, as in the authors' code); the divisor stays k.
- Scoring (``full_sort_predict``): decoder logits at the last real position, computed
  from the posterior mean mu (no sampling at evaluation, so scores are deterministic).
  Already-seen items are not masked out (the harness ranks every item).
- KL annealing counts optimizer steps inside the model (a buffer incremented by every
  ``calculate_loss`` call in training mode), weight = kl_max * min(1, step /
  anneal_steps).  The authors' slope 1/200000 with cap 0.2 reaches the cap after 40000
  steps (one user per step there); ``anneal_steps`` defaults to that count.
- The authors sample z with sigma = exp(log_sigma) but compute the KL as if that head
  were log(sigma^2); here the head is the log-variance in both places (standard VAE).
- The decoder is only evaluated at real (non-padding) positions, so the cost scales
  with the number of real steps, not B x L.  Outputs at real positions depend only on
  earlier items (GRU), so trailing padding changes nothing.
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
    def next_k_targets(self, item_seq, item_len, target):
        """(B, L, k) next-k item windows of every step and a validity mask.

        The known sequence is the prefix followed by the target; window entries past
        it (padding) or repeating an earlier entry of the same window are invalid.
        """
        B, L = item_seq.shape
        k = self.next_k
        known = torch.cat([item_seq, item_seq.new_zeros(B, k + 1)], dim=1)
        known = known.scatter(1, item_len.view(-1, 1), target.view(-1, 1))
        offsets = torch.arange(L, device=item_seq.device).view(L, 1) + torch.arange(
            1, k + 1, device=item_seq.device).view(1, k)
        windows = known[:, offsets]  # (B, L, k)
        valid = windows > 0
        for j in range(1, k):
            repeated = (windows[..., j : j + 1] == windows[..., :j]).any(-1)
            valid[..., j] &= ~repeated
        return windows, valid

    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        item_len = interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        B, L = item_seq.shape
        real = torch.arange(L, device=item_seq.device).view(1, L) < item_len.view(B, 1)

        mu, logvar = self.encode(item_seq)
        mu_r, logvar_r = mu[real], logvar[real]  # (N, latent), N real steps
        z = self.reparameterize(mu_r, logvar_r)
        log_probs = F.log_softmax(self.decode(z), dim=-1)  # (N, n_items)

        windows, valid = self.next_k_targets(item_seq, item_len, target)
        windows, valid = windows[real], valid[real]  # (N, k)
        nll = -(log_probs.gather(1, windows) * valid).sum() / (self.next_k * B)

        kl = 0.5 * (torch.exp(logvar_r) + mu_r.pow(2) - 1.0 - logvar_r).sum(-1).mean()
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
