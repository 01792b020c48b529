"""STOSA: Fan, Liu, Wang, Nazari, Zheng, Peng & Yu, "Sequential Recommendation via
Stochastic Self-Attention", WWW 2022.

Equations implemented (named by content; details as in the authors' code, see
"Reference" below):

- Stochastic embeddings: every item has a mean and a covariance
  embedding (diagonal Gaussian), each summed with its own learned position embedding,
  then a shared LayerNorm and dropout; the mean is passed through ELU, the covariance
  through ELU + 1 so that it stays positive.
- Wasserstein self-attention: per head, mean and covariance
  queries/keys/values (covariance projections through ELU + 1); the attention score of
  query i and key j is -W2(N(mu_i, S_i), N(mu_j, S_j)) / sqrt(d_head), where
  W2 = ||mu_i - mu_j||^2 + ||S_i^{1/2} - S_j^{1/2}||_F^2 (the squared 2-Wasserstein
  distance of diagonal Gaussians, computed with matmuls); causal mask, padded keys
  masked.  Outputs: mean = sum_j a_ij mu_j, covariance = sum_j a_ij^2 S_j,
  each followed by a dense layer, dropout and a residual LayerNorm.
- Feed-forward: separate position-wise ELU FFNs for the mean and the
  covariance streams (residual + LayerNorm), covariance output through ELU + 1.
- Prediction: the score of item v is -W2 between the sequence's
  output distribution at the last real position and the item's distribution.
- Loss: BPR on distances, -log sigma(W2(s, v-) - W2(s, v+)),
  plus the positive-vs-negative regulariser
  pvn_weight * max(0, W2(s, v+) - W2(v+, v-)), averaged over the trained transitions.

Reference: zfan20/STOSA, commit 1f00ecb193a7ea7fe1bc4d14e999ce4ebec845c2 (``modules.py``,
``seqmodels.py``, ``trainers.py``, ``datasets.py``, ``main.py``).  The authors' loader
(``datasets.py`` ``SASRecDataset``, ``__len__`` = number of users) yields each user's
training sequence once per epoch, and ``trainers.py`` ``bpr_optimization`` averages the
loss over its real positions, so every transition counts once per epoch.  Remaining
deviations, one line each:

- training instances are the harness's prefixes, and each trains only its last position
  (prefix -> target), so each transition still counts once per epoch (see below);
- one uniform negative per transition, which may equal an item of the history (the
  authors resample until it is not in the user's whole sequence);
- right padding, positions counted from the oldest item of the window (the authors
  left-pad to ``max_seq_length``, so their last item always sits in the last slot);
- the encoder follows the paper by default: both streams pass through every layer.  The
  released ``DistSAEncoder.forward`` (``modules.py`` line 461) assigns each layer's mean
  output to ``maen_hidden_states`` and never uses it, so there every layer reads the
  embedding-layer mean and the model's output mean *is* that embedding-layer mean (the
  mean-side values, dense layers and FFNs get no gradient).  ``mean_stream: released``
  reproduces that behaviour, ``mean_stream: paper`` (default) the paper's;
- the unused per-user margin embedding (``user_margins``) is omitted;
- padded keys get a large finite negative score (the authors add -2^32 + 1), no NaN;
- full ranking by the closed form -W2 over every item (the authors mask the user's
  training items before ranking); the harness's ``loss_type`` is ignored;
- training schedule: the harness's Adam at lr 1e-3 without weight decay (as the
  authors' README command), but the profile's batch size, history window (the README
  command: 256, 100 items) and early stopping (theirs: 500 epochs, patience 100).

Adaptations to this harness:

- Leave-one-out next-item prediction with full ranking over all items.  Each training
  instance is a prefix ``item_id_list`` = h[0..n-1] with target ``item_id`` = h[n].
  The harness feeds every prefix n = 1..N of a user's training sequence, so training
  every real position of every prefix would count the transition h[t] -> h[t+1] once
  per prefix that contains it (N - t times per epoch: quadratic weighting of early
  steps).  Each instance therefore trains one transition, its last: the output at
  position n-1 against the target h[n].  Every transition of a user's sequence is the
  last one of exactly one prefix, so one epoch counts each transition once, as the
  authors' per-user loader does.  The encoder still reads the whole (causal) history.
- Negatives: one item per transition drawn uniformly from 1..n_items-1 with torch's
  global RNG (``torch.randint``).
- Outputs at real positions are independent of trailing padding (causal mask + padded
  keys masked).
- ``full_sort_predict`` evaluates the closed form
  ||m||^2 + ||M_v||^2 - 2 m.M_v + sum(c) + sum(C_v) - 2 sqrt(c).sqrt(C_v)
  with two (B, H) x (H, n_items) matmuls (no (B, n_items, H) tensor).
- Initialisation as in the authors' code: N(0.01, initializer_range) for embeddings and
  linear weights, zero biases.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender

MASKED_SCORE = -1.0e9  # finite, so a fully padded query row never produces NaN
# paper: both streams pass through every layer; released: the authors' encoder, whose
# mean stream skips the layers (their ``maen_hidden_states`` typo)
MEAN_STREAMS = ("paper", "released")


def positive(x):
    """ELU + 1: maps to (0, inf), the covariance parameterisation of the paper."""
    return F.elu(x) + 1.0


def wasserstein_distance(mean1, cov1, mean2, cov2):
    """Squared 2-Wasserstein distance of diagonal Gaussians, elementwise over leading dims."""
    mean_part = (mean1 - mean2).pow(2).sum(-1)
    cov_part = (cov1.clamp_min(1e-24).sqrt() - cov2.clamp_min(1e-24).sqrt()).pow(2).sum(-1)
    return mean_part + cov_part


def wasserstein_distance_matmul(mean1, cov1, mean2, cov2):
    """Pairwise squared W2: (..., n, H) x (..., m, H) -> (..., n, m), via matmuls."""
    mean_part = (mean1.pow(2).sum(-1, keepdim=True) + mean2.pow(2).sum(-1).unsqueeze(-2)
                 - 2.0 * mean1 @ mean2.transpose(-1, -2))
    sqrt1, sqrt2 = cov1.clamp_min(1e-24).sqrt(), cov2.clamp_min(1e-24).sqrt()
    cov_part = (cov1.sum(-1, keepdim=True) + cov2.sum(-1).unsqueeze(-2)
                - 2.0 * sqrt1 @ sqrt2.transpose(-1, -2))
    return mean_part + cov_part


class WassersteinAttention(nn.Module):
    """Multi-head self-attention on Gaussians with -W2 scores."""

    def __init__(self, hidden_size, n_heads, hidden_dropout, attn_dropout, eps):
        super().__init__()
        if hidden_size % n_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of n_heads {n_heads}")
        self.n_heads, self.head_size = n_heads, hidden_size // n_heads
        names = ("mean_query", "mean_key", "mean_value", "cov_query", "cov_key", "cov_value")
        for name in names:
            setattr(self, name, nn.Linear(hidden_size, hidden_size))
        self.mean_dense = nn.Linear(hidden_size, hidden_size)
        self.cov_dense = nn.Linear(hidden_size, hidden_size)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.out_dropout = nn.Dropout(hidden_dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def heads(self, x):
        B, L, _ = x.shape
        return x.view(B, L, self.n_heads, self.head_size).transpose(1, 2)

    def merge(self, x):
        B, _, L, _ = x.shape
        return x.transpose(1, 2).reshape(B, L, self.n_heads * self.head_size)

    def forward(self, mean, cov, mask):
        q_m, k_m, v_m = (self.heads(f(mean))
                         for f in (self.mean_query, self.mean_key, self.mean_value))
        q_c, k_c, v_c = (self.heads(positive(f(cov)))
                         for f in (self.cov_query, self.cov_key, self.cov_value))
        scores = -wasserstein_distance_matmul(q_m, q_c, k_m, k_c) / math.sqrt(self.head_size)
        scores = scores.masked_fill(~mask, MASKED_SCORE)
        probs = self.attn_dropout(torch.softmax(scores, dim=-1))
        mean_ctx = self.merge(probs @ v_m)
        cov_ctx = self.merge(probs.pow(2) @ v_c)
        mean_out = self.layer_norm(self.out_dropout(self.mean_dense(mean_ctx)) + mean)
        cov_out = self.layer_norm(self.out_dropout(self.cov_dense(cov_ctx)) + cov)
        return mean_out, cov_out


class FeedForward(nn.Module):
    """Position-wise ELU FFN with residual LayerNorm."""

    def __init__(self, hidden_size, dropout, eps):
        super().__init__()
        self.dense_1 = nn.Linear(hidden_size, 4 * hidden_size)
        self.dense_2 = nn.Linear(4 * hidden_size, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x):
        return self.layer_norm(self.dropout(self.dense_2(F.elu(self.dense_1(x)))) + x)


class STOSALayer(nn.Module):
    def __init__(self, hidden_size, n_heads, hidden_dropout, attn_dropout, eps):
        super().__init__()
        self.attention = WassersteinAttention(hidden_size, n_heads, hidden_dropout,
                                              attn_dropout, eps)
        self.mean_ffn = FeedForward(hidden_size, hidden_dropout, eps)
        self.cov_ffn = FeedForward(hidden_size, hidden_dropout, eps)

    def forward(self, mean, cov, mask):
        mean, cov = self.attention(mean, cov, mask)
        return self.mean_ffn(mean), positive(self.cov_ffn(cov))


class STOSA(SequentialRecommender):
    """Stochastic self-attention over Gaussian item embeddings, ranked by -W2."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = config["hidden_size"]
        self.n_layers = config["n_layers"]
        self.n_heads = config["n_heads"]
        self.hidden_dropout_prob = config["hidden_dropout_prob"]
        self.attn_dropout_prob = config["attn_dropout_prob"]
        self.pvn_weight = float(config["pvn_weight"])
        self.initializer_range = config["initializer_range"]
        self.mean_stream = str(config["mean_stream"]).lower()
        if self.mean_stream not in MEAN_STREAMS:
            raise ValueError(f"STOSA: mean_stream must be one of {MEAN_STREAMS}, got {self.mean_stream!r}")
        eps = config["layer_norm_eps"]

        H = self.hidden_size
        self.item_mean_embedding = nn.Embedding(self.n_items, H, padding_idx=0)
        self.item_cov_embedding = nn.Embedding(self.n_items, H, padding_idx=0)
        self.position_mean_embedding = nn.Embedding(self.max_seq_length, H)
        self.position_cov_embedding = nn.Embedding(self.max_seq_length, H)
        self.layer_norm = nn.LayerNorm(H, eps=eps)
        self.dropout = nn.Dropout(self.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            STOSALayer(H, self.n_heads, self.hidden_dropout_prob, self.attn_dropout_prob, eps)
            for _ in range(self.n_layers))
        self.apply(self._init_weights)

    def _init_weights(self, module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.01, std=self.initializer_range)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.data.fill_(1.0)
            module.bias.data.zero_()

    # ------------------------------------------------------------------ model
    def item_distributions(self, items=None):
        """Mean and covariance of ``items`` (any shape), or of the whole catalogue."""
        if items is None:
            return self.item_mean_embedding.weight, positive(self.item_cov_embedding.weight)
        return self.item_mean_embedding(items), positive(self.item_cov_embedding(items))

    def forward(self, item_seq):
        """(B, L) items -> output means and covariances, each (B, L, H)."""
        B, L = item_seq.shape
        positions = torch.arange(L, device=item_seq.device)
        mean = self.item_mean_embedding(item_seq) + self.position_mean_embedding(positions)
        cov = self.item_cov_embedding(item_seq) + self.position_cov_embedding(positions)
        mean = F.elu(self.dropout(self.layer_norm(mean)))
        cov = positive(self.dropout(self.layer_norm(cov)))
        causal = torch.ones(L, L, dtype=torch.bool, device=item_seq.device).tril()
        mask = causal.view(1, 1, L, L) & (item_seq > 0).view(B, 1, 1, L)
        for layer in self.layers:
            layer_mean, cov = layer(mean, cov, mask)
            if self.mean_stream == "paper":
                mean = layer_mean
            # released: every layer reads the embedding-layer mean, which is also the output
        return mean, cov

    def trained_transitions(self, interaction):
        """The one transition each instance trains: its last real position and the target.

        Returns (B,) positions n-1 and (B,) positive items h[n].  Every transition of a
        user's sequence is the last one of exactly one prefix, so over the harness's
        prefixes each transition is trained once per epoch (module docstring).
        """
        return interaction[self.ITEM_SEQ_LEN] - 1, interaction[self.POS_ITEM_ID]

    def calculate_loss(self, interaction):
        """Scalar: BPR on W2 + pvn regulariser, mean over the B trained transitions."""
        item_seq = interaction[self.ITEM_SEQ]
        mean, cov = self.forward(item_seq)
        last, pos_items = self.trained_transitions(interaction)
        neg_items = torch.randint(1, self.n_items, pos_items.shape, device=item_seq.device)
        seq_mean, seq_cov = self.gather_indexes(mean, last), self.gather_indexes(cov, last)
        pos_mean, pos_cov = self.item_distributions(pos_items)
        neg_mean, neg_cov = self.item_distributions(neg_items)

        pos_dist = wasserstein_distance(seq_mean, seq_cov, pos_mean, pos_cov)
        neg_dist = wasserstein_distance(seq_mean, seq_cov, neg_mean, neg_cov)
        pos_vs_neg = wasserstein_distance(pos_mean, pos_cov, neg_mean, neg_cov)
        bpr = -F.logsigmoid(neg_dist - pos_dist).mean()
        pvn = torch.clamp(pos_dist - pos_vs_neg, min=0).mean()
        return bpr + self.pvn_weight * pvn

    # ------------------------------------------------------------------ scoring
    def _last_distribution(self, interaction):
        mean, cov = self.forward(interaction[self.ITEM_SEQ])
        last = interaction[self.ITEM_SEQ_LEN] - 1
        return self.gather_indexes(mean, last), self.gather_indexes(cov, last)

    def predict(self, interaction):
        mean, cov = self._last_distribution(interaction)
        item_mean, item_cov = self.item_distributions(interaction[self.ITEM_ID])
        return -wasserstein_distance(mean, cov, item_mean, item_cov)

    def full_sort_predict(self, interaction):
        mean, cov = self._last_distribution(interaction)
        item_mean, item_cov = self.item_distributions()
        return -wasserstein_distance_matmul(mean, cov, item_mean, item_cov)
