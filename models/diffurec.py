"""DiffuRec: Li, Sun & Li, "DiffuRec: A Diffusion Model for Sequential Recommendation",
ACM Transactions on Information Systems 42(3), 2023 (arXiv:2304.00686).

Implemented (numbers are the paper's equations):

- Eq. 13  z_i = e_i + lambda_i * (x_s + d_s): every history embedding is shifted by the
  noised target (training) or the current reverse state (inference) plus a step
  embedding d_s (sinusoid of the step -> Linear-SiLU-Linear); lambda_i ~ N(delta, delta).
- Eq. 14  noise schedules: truncated linear (default), linear, cosine, sqrt (below).
- Eq. 15  x_0 ~ q(x_0 | e_target) = N(sqrt(alpha_0) e, (1 - alpha_0) I), then
  x_s = sqrt(abar_s) x_0 + sqrt(1 - abar_s) eps with s ~ U{1..T}.
- Approximator f_theta: Transformer over [z_1..z_n]; x0_hat = its output at the last
  real position (ablation "w GRU", Table 3: ``approximator: gru``).
- Eqs. 16-17 (loss)  cross-entropy of softmax(x0_hat . E^T) over the whole catalogue.
- Eqs. 17-18 (reverse)  x_T ~ N(0, I); for t = T..1: x0_hat = f(z(x_t, d_t)),
  x_{t-1} = mu_t(x_t, x0_hat) + sigma_t eps' with the posterior mean
  mu_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0_hat + sqrt(alpha_t)(1 - abar_{t-1}) / (1 - abar_t) x_t
  and variance beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t; no noise on the last step.
- Eq. 19  rounding: rank every item by x_0 . e_i (``rounding: neg_sq_distance`` ranks by
  -||x_0 - e_i||^2, the "w R*" ablation of Table 3).

Adaptations to the harness: leave-one-out next-item prediction with every prefix of a
training sequence as an instance; full ranking over all items; the loss is the paper's
own objective (CE over the catalogue, identical to RecBole's ``loss_type: CE``).
Sequences arrive right-padded (items at 0..len-1), not left-padded as in the authors'
release, so x0_hat is gathered at position len-1.

Choices where the paper is silent or ambiguous:

1. Eq. 14 is garbled in our copy ("a/t s + b/s").  We read it as a line in s whose
   slope scales with 1/T, the DDPM/Diffusion-LM convention: the DDPM linear ramp
   1e-4 -> 0.02 over 1000 steps rescaled to T steps (x 1000/T), plus the constant
   offset b = 0.01 of Diffusion-LM's truncated-linear schedule:
   beta_s = 0.01 + (1000/T) (1e-4 + (s-1)/(T-1) (0.02 - 1e-4)); truncation as the paper
   states: a beta_s above tau = 1 is divided by 10 (only happens for T < 21; at T = 32
   beta runs 0.0131 -> 0.635).  ``linear`` is the same ramp without the offset;
   ``cosine`` (Nichol & Dhariwal 2021, s = 0.008) and ``sqrt`` (Diffusion-LM,
   abar(t) = 1 - sqrt(t + 1e-4)) are defined through abar and discretised as
   beta_s = 1 - abar(s/T) / abar((s-1)/T).  Every beta is clipped to <= 0.999.
2. alpha_0 of Eq. 15 (the extra "one step of diffusion" from e to x_0) is taken as
   alpha_1 = 1 - beta_1, the first step of the schedule.
3. N(delta, delta) is read as (mean, standard deviation), as in the authors' code
   (a variance of 1e-3 would mean a standard deviation 30x the mean).  lambda is drawn
   afresh at every training step and every reverse step.
4. Step embedding: the sinusoid of the 0-based step index (x 1 or x 1000/T, see
   ``step_embedding_scale``), width hidden_size, through Linear(H, 4H)-SiLU-Linear(4H, H).
5. Transformer: pre-LayerNorm blocks (as the authors' release), GELU feed-forward of
   width ``inner_size``, dropout on attention weights and on each sub-layer output, and
   dropout + LayerNorm on x0_hat.  Item embeddings: dropout(0.3) then LayerNorm;
   weights Xavier-normal (paper Sec. 5.4, which names only the Transformer), embeddings
   N(0, ``embedding_init_std``): 0.02 in the clean protocol (RecBole's SASRec/BERT4Rec
   init, so every attention model starts alike); 1.0 under ``protocol: paper`` (PyTorch's
   default, kept by the authors: item vectors on the noise scale, and a cross-entropy
   that starts near 37 and needs far more epochs).
6. Item vectors enter x_0 with gradient (not detached), as in the authors' code.
7. ``reverse_steps`` K < T: the evenly spaced steps round(linspace(1, T, K)) (K = 1:
   just T), with the schedule respaced (beta'_k = 1 - abar_{tau_k}/abar_{tau_{k-1}}) as
   in improved DDPM; the approximator still sees the original step index.
8. Clean defaults: causal attention (the output at the last position may only use the
   history, as in SASRec) and learned absolute position embeddings: without them a
   Transformer's last-position output is a function of the *set* of history items,
   and every Transformer baseline in the grid has them.  lambda per position (a scalar
   per history item, as Eq. 13 writes lambda_i), x_0 sampled by Eq. 15.
9. Padding: attention masks padded *keys*, so outputs at real positions do not depend
   on trailing padding (clean).  ``attention_padding: release`` reproduces the authors'
   layout instead (below).
10. Speed (no effect on the maths): on CPU each batch is split into length buckets,
    each trimmed to its own longest history; the history embeddings, masks and step
    embeddings are computed once per batch, not once per reverse step; the final block
    computes only the query row at the last real position; the catalogue score matmul
    runs once, after the reverse loop.  Random draws (x_T, lambda, noise) are shaped by
    (B, MAX_ITEM_LIST_LENGTH) whatever the batch width, so trimming a batch changes no
    score under the same seed.

The authors' public release (github.com/WHUIR/DiffuRec at f6f70c9, read: src/diffurec.py,
model.py, trainer.py, utils.py, main.py; ``bench equivalence --reference DIR`` checks it
numerically) differs from the clean defaults in what ``protocol_overrides.paper`` switches on.
Model switches (defaults = clean; each absent from the YAML's top level, so clean configs and
their records are unchanged):

- ``lambda_per: element``: lambda drawn per element of the B x L x H tensor;
- ``step_embedding_scale: rescaled``: the step index fed to the sinusoid times 1000/T;
- ``train_x0: target``: the target embedding noised directly, no separate x_0 draw;
- ``causal: false`` and ``position_embedding: false``: bidirectional attention, no position
  embedding (commented out there);
- ``embedding_init_std: 1.0``: item embeddings at PyTorch's N(0, 1);
- ``sampling_noise: large``: the reverse step's standard deviation is sqrt(beta_t)
  (improved DDPM's "fixed large" variance), not beta~_t as Eq. 18 prints nor sqrt(beta~_t);
- ``attention_padding: release``: every history left-padded to MAX_ITEM_LIST_LENGTH and the
  padded *query rows* masked (their scores all -1e9, so a padded row attends uniformly);
  real positions attend to the padding embeddings (which also get lambda * (x + d)), so the
  output depends on the padding width;
- ``hidden_act: gelu_tanh``: the release hard-codes the tanh approximation of GELU (its
  ``--hidden_act`` flag is never read);
- ``dropout_layout: release``: 22 dropouts per forward pass instead of 14 (4 blocks): also
  on the feed-forward's inner activation and on each block's whole output;
- ``init: release``: q/k/v and the step-embedding MLP keep PyTorch's default Linear init,
  only the attention output projection and the feed-forward weights are Xavier-normal,
  every bias keeps PyTorch's uniform default, and the padding row of the item table is
  random and trained;
- ``truncation: release``: for T <= 20 (where the ramp passes 1) the release replaces the
  whole ramp's end by (1000/T) 0.001 + 0.01, where the clean schedule divides each beta
  above 1 by 10 (identical at T = 32).

Batch 512 (the paper's text says 1024).  The training schedule and checkpoint rule of the
release (500 epochs, StepLR(100, 0.1), validation after 0-based epochs 20, 40, ... on every
user, one checkpoint: the last validation where any of six metrics, rounded as the release
rounds them, improved) are the harness's ``paper`` protocol (bench/zoo.py PROTOCOL_DEFAULTS,
bench/engine.py).  Their "lossaware" step sampler is never fed losses, so steps are in fact
uniform, as here.  Not reproduced: the release ranks the padding item 0 among the
candidates (the harness ranks real items only) and averages validation metrics over
batches of 512 users for its checkpoint choice only (bench/engine.py reproduces that
choice; the reported metrics are means over users).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch import nn

SCHEDULES = ("truncated_linear", "linear", "cosine", "sqrt")
MAX_BETA = 0.999


def _abar_schedule(abar, steps: int) -> torch.Tensor:
    t = torch.arange(steps + 1, dtype=torch.float64) / steps
    a = abar(t)
    return (1.0 - a[1:] / a[:-1]).clamp(max=MAX_BETA)


def beta_schedule(name: str, steps: int, truncation: str = "elementwise") -> torch.Tensor:
    """(T,) float64 beta_1..beta_T of the named schedule (see the module docstring).

    truncation (truncated_linear only): 'elementwise' divides each beta above 1 by 10 (the
    paper's text); 'release' ends the whole ramp at (1000/T) 0.001 + 0.01 instead, as the
    authors' code does when the ramp's end passes 1 (T <= 20).
    """
    s = torch.arange(1, steps + 1, dtype=torch.float64)
    scale = 1000.0 / steps
    ramp = scale * (1e-4 + (s - 1) / max(steps - 1, 1) * (0.02 - 1e-4))
    if name == "linear":
        betas = ramp
    elif name == "truncated_linear":
        betas = 0.01 + ramp
        if truncation == "release":
            if betas[-1] > 1.0:
                end = scale * 0.001 + 0.01
                betas = torch.linspace(float(betas[0]), end, steps, dtype=torch.float64)
        elif truncation == "elementwise":
            betas = torch.where(betas > 1.0, betas / 10.0, betas)
        else:
            raise ValueError(f"truncation must be 'elementwise' or 'release', got {truncation!r}")
    elif name == "cosine":
        betas = _abar_schedule(lambda t: torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2, steps)
    elif name == "sqrt":
        betas = _abar_schedule(lambda t: 1.0 - torch.sqrt(t + 1e-4), steps)
    else:
        raise ValueError(f"noise_schedule must be one of {SCHEDULES}, got {name!r}")
    return betas.clamp(min=1e-8, max=MAX_BETA)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"expected a boolean, got {value!r}")
        return value.strip().lower() in ("true", "1")
    return bool(value)


def respaced_steps(steps: int, k: int) -> list[int]:
    """K evenly spaced steps of 1..T, ascending (the reverse process visits them backwards)."""
    if not 1 <= k <= steps:
        raise ValueError(f"reverse_steps must lie in 1..{steps}, got {k}")
    if k == 1:
        return [steps]
    return sorted({int(round(1 + i * (steps - 1) / (k - 1))) for i in range(k)})


def sinusoid(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(N, dim) Transformer sinusoidal encoding of real-valued positions (N,)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32,
                                                            device=positions.device) / half)
    args = positions.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


ACTIVATIONS = {"gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
               "relu": F.relu, "silu": F.silu}


class _Block(nn.Module):
    """Pre-LayerNorm Transformer block on fused QKV and scaled_dot_product_attention.

    ``release_dropout``: the authors' two extra dropouts, on the feed-forward's inner
    activation and on the block's whole output (``dropout_layout: release``).
    """

    def __init__(self, hidden: int, heads: int, inner: int, p_hidden: float, p_attn: float,
                 act: str, eps: float, release_dropout: bool = False):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not a multiple of n_heads {heads}")
        if act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {tuple(ACTIVATIONS)}, got {act!r}")
        self.heads, self.p_hidden, self.p_attn = heads, p_hidden, p_attn
        self.release_dropout = release_dropout
        self.ln1 = nn.LayerNorm(hidden, eps=eps)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden, eps=eps)
        self.ff1 = nn.Linear(hidden, inner)
        self.ff2 = nn.Linear(inner, hidden)
        self.act = ACTIVATIONS[act]

    def _drop(self, x):
        return F.dropout(x, self.p_hidden, self.training)

    def _ffn(self, h):
        a = self.act(self.ff1(F.layer_norm(h, h.shape[-1:], self.ln2.weight, self.ln2.bias, self.ln2.eps)))
        h = h + self._drop(self.ff2(self._drop(a) if self.release_dropout else a))
        return self._drop(h) if self.release_dropout else h

    def forward(self, h, attn_mask, is_causal: bool, hide=None):
        """h: (B, L, H) -> (B, L, H); attn_mask None or (B, 1, 1, L) bool (True = attend).

        hide: (B, 1, L, L) bool, the authors' mask (``release_attention_mask``): hidden scores are
        *replaced* by -1e9 as in their code, so no gradient flows through them (an additive mask
        would give the same forward pass but other gradients).
        """
        b, length, hidden = h.shape
        a = self.ln1(h)
        q, k, v = self.qkv(a).view(b, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        if hide is not None:
            scores = (q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])).masked_fill(hide, -1e9)
            o = F.dropout(scores.softmax(-1), self.p_attn, self.training) @ v
        else:
            o = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, is_causal=is_causal and attn_mask is None,
                dropout_p=self.p_attn if self.training else 0.0)
        o = o.transpose(1, 2).reshape(b, length, hidden)
        h = h + self._drop(self.out(o))
        return self._ffn(h)

    def forward_last(self, h, last, key_mask):
        """Only the query row at position ``last`` (B,) (None = the last column): (B, H).

        key_mask: None or (B, 1, 1, L) bool over keys (positions <= last): the same
        row whether the attention is causal or bidirectional with key padding masked.
        """
        b, length, hidden = h.shape
        a = self.ln1(h)
        w, bias = self.qkv.weight, self.qkv.bias
        kv = F.linear(a, w[hidden:], bias[hidden:])
        k, v = kv.view(b, length, 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        if last is None:
            a_last, h_last = a[:, -1], h[:, -1]
        else:
            rows = torch.arange(b, device=h.device)
            a_last, h_last = a[rows, last], h[rows, last]
        q = F.linear(a_last, w[:hidden], bias[:hidden]).view(b, self.heads, 1, -1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask,
                                           dropout_p=self.p_attn if self.training else 0.0)
        h_last = h_last + self._drop(self.out(o.reshape(b, hidden)))
        return self._ffn(h_last)


def left_pad(item_seq: torch.Tensor, lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(B, width) the right-padded histories (B, L) moved to the right end, zeros before:
    the authors' layout (their loader pads on the left to a fixed width)."""
    cols = torch.arange(width, device=item_seq.device)[None, :]
    src = cols - (width - lengths[:, None])
    taken = item_seq.gather(1, src.clamp(0, item_seq.shape[1] - 1))
    return torch.where(src >= 0, taken, torch.zeros_like(taken))


def release_attention_mask(query_pad: torch.Tensor, causal: bool) -> torch.Tensor:
    """(B, 1, L, L) bool, True = hidden: the authors' attention mask from query_pad (B, L) bool.

    Their mask hides padded *query rows* (every score of such a row is -1e9, so it attends
    uniformly to all positions), never padded keys: real positions attend to the padding.
    With ``causal`` the later keys are hidden as well (a left-padded causal model still
    sees the padding before each position).
    """
    b, length = query_pad.shape
    hide = query_pad[:, None, :, None].expand(b, 1, length, length)
    if causal:
        later = torch.triu(torch.ones(length, length, dtype=torch.bool, device=query_pad.device), 1)
        hide = hide | later
    return hide


class DiffuRec(SequentialRecommender):
    """DiffuRec (Li et al., TOIS 2023); see the module docstring for equations and choices."""

    # Cost of one extra length bucket, in padded-token equivalents (CPU dispatch overhead).
    BUCKET_OVERHEAD_TOKENS = 64

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        def get(key, default):
            value = config[key]
            return default if value is None else value

        self.hidden_size = int(get("hidden_size", 128))
        self.inner_size = int(get("inner_size", 4 * self.hidden_size))
        self.n_layers = int(get("n_layers", 4))
        self.n_heads = int(get("n_heads", 4))
        self.hidden_dropout_prob = float(get("hidden_dropout_prob", 0.1))
        self.attn_dropout_prob = float(get("attn_dropout_prob", 0.1))
        self.emb_dropout_prob = float(get("emb_dropout_prob", 0.3))
        self.hidden_act = str(get("hidden_act", "gelu"))
        self.layer_norm_eps = float(get("layer_norm_eps", 1e-12))
        self.embedding_init_std = float(get("embedding_init_std", 0.02))
        self.diffusion_steps = int(get("diffusion_steps", 32))
        self.reverse_steps = int(get("reverse_steps", self.diffusion_steps))
        self.noise_schedule = str(get("noise_schedule", "truncated_linear"))
        self.lambda_scale = float(get("lambda_scale", 0.001))
        self.lambda_per = str(get("lambda_per", "position"))
        scale = str(get("step_embedding_scale", 1)).strip().lower()
        self.train_x0 = str(get("train_x0", "sample"))
        self.approximator = str(get("approximator", "transformer"))
        self.causal = _as_bool(get("causal", True))
        self.use_position = _as_bool(get("position_embedding", True))
        self.rounding = str(get("rounding", "inner_product"))
        self.sampling_noise = str(get("sampling_noise", "std"))
        # control switch (variants and extra evaluations only; absent from the YAML so that the
        # base runs' configs, and their records, stay as they are): the reverse process starts
        # from x_T ~ N(0, I) ("noise", Eq. 17) or from x_T = 0 ("zero")
        self.reverse_start = str(get("reverse_start", "noise"))
        self.length_buckets = str(get("length_buckets", "auto")).lower()
        self.max_len = int(self.max_seq_length or 50)
        # the authors' release, switch by switch (module docstring); defaults = clean
        self.attention_padding = str(get("attention_padding", "keys"))
        self.dropout_layout = str(get("dropout_layout", "suite"))
        self.init = str(get("init", "suite"))
        self.truncation = str(get("truncation", "elementwise"))

        self._check("lambda_per", self.lambda_per, ("position", "element"))
        self._check("train_x0", self.train_x0, ("sample", "target"))
        self._check("approximator", self.approximator, ("transformer", "gru"))
        self._check("rounding", self.rounding, ("inner_product", "neg_sq_distance"))
        self._check("sampling_noise", self.sampling_noise, ("std", "variance", "large"))
        self._check("reverse_start", self.reverse_start, ("noise", "zero"))
        if self.lambda_scale < 0:
            raise ValueError(f"lambda_scale must be >= 0, got {self.lambda_scale}")
        self._check("length_buckets", self.length_buckets, ("auto", "true", "false"))
        self._check("attention_padding", self.attention_padding, ("keys", "release"))
        self._check("dropout_layout", self.dropout_layout, ("suite", "release"))
        self._check("init", self.init, ("suite", "release"))
        self._check("truncation", self.truncation, ("elementwise", "release"))
        if scale in ("1", "1.0"):
            self.step_scale = 1.0
        elif scale == "rescaled":
            self.step_scale = 1000.0 / self.diffusion_steps
        else:
            raise ValueError(f"step_embedding_scale must be 1 or 'rescaled', got {scale!r}")

        hidden = self.hidden_size
        # release init: the padding row is an ordinary, trained row
        self.item_embedding = nn.Embedding(self.n_items, hidden, padding_idx=None if self.init == "release" else 0)
        self.position_embedding = nn.Embedding(self.max_len, hidden) if self.use_position else None
        self.emb_norm = nn.LayerNorm(hidden, eps=self.layer_norm_eps)
        self.step_mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.SiLU(), nn.Linear(4 * hidden, hidden))
        if self.approximator == "transformer":
            self.blocks = nn.ModuleList(
                _Block(hidden, self.n_heads, self.inner_size, self.hidden_dropout_prob,
                       self.attn_dropout_prob, self.hidden_act, self.layer_norm_eps,
                       release_dropout=self.dropout_layout == "release")
                for _ in range(self.n_layers))
            self.gru = None
        else:
            self.blocks = None
            self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out_norm = nn.LayerNorm(hidden, eps=self.layer_norm_eps)
        self.apply(self._init_weights if self.init == "suite" else self._init_release)
        self._register_schedule()

    @staticmethod
    def _check(key, value, allowed):
        if value not in allowed:
            raise ValueError(f"{key} must be one of {allowed}, got {value!r}")

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.xavier_normal_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, self.embedding_init_std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                (nn.init.xavier_normal_ if "weight" in name else nn.init.zeros_)(param)

    def _init_release(self, module):
        """The authors' init: PyTorch's defaults (already in place) except Xavier-normal weights
        of the attention output projection and the feed-forward; embeddings N(0, std), the
        padding row included."""
        if isinstance(module, _Block):
            for linear in (module.out, module.ff1, module.ff2):
                nn.init.xavier_normal_(linear.weight)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, self.embedding_init_std)

    # ------------------------------------------------------------------ schedule
    def _register_schedule(self):
        """beta, alpha, abar and the (respaced) posterior coefficients as float32 buffers."""
        T = self.diffusion_steps
        betas = beta_schedule(self.noise_schedule, T, self.truncation)
        alphas = 1.0 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        buffers = {
            "betas": betas, "alphas": alphas, "alphas_cumprod": abar, "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(), "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "posterior_coef_x0": abar_prev.sqrt() * betas / (1 - abar),
            "posterior_coef_xt": alphas.sqrt() * (1 - abar_prev) / (1 - abar),
            "posterior_variance": (1 - abar_prev) / (1 - abar) * betas,
            # Eq. 15: x_0 = sqrt(alpha_0) e + sqrt(1 - alpha_0) eps with alpha_0 := alpha_1
            "x0_coef": torch.stack([alphas[0].sqrt(), (1 - alphas[0]).sqrt()]),
        }
        # Reverse process over K respaced steps, stored in visiting order (t = T first).
        taus = respaced_steps(T, self.reverse_steps)
        r_abar = abar[torch.tensor(taus) - 1]
        r_prev = torch.cat([torch.ones(1, dtype=torch.float64), r_abar[:-1]])
        r_beta = 1.0 - r_abar / r_prev
        r_var = (1 - r_prev) / (1 - r_abar) * r_beta
        sigma = {"std": r_var.sqrt(), "variance": r_var, "large": r_beta.sqrt()}[self.sampling_noise].clone()
        sigma[0] = 0.0  # the last visited step returns the posterior mean (= x0_hat)
        rev = {
            "rev_step_index": torch.tensor(taus, dtype=torch.long) - 1,
            "rev_coef_x0": r_prev.sqrt() * r_beta / (1 - r_abar),
            "rev_coef_xt": (1 - r_beta).sqrt() * (1 - r_prev) / (1 - r_abar),
            "rev_variance": r_var, "rev_sigma": sigma,
        }
        for name, value in {**buffers, **rev}.items():
            value = value.flip(0) if name.startswith("rev_") else value
            value = value if value.dtype == torch.long else value.float()
            self.register_buffer(name, value, persistent=False)

    def q_sample(self, x0, s, noise=None):
        """x_s = sqrt(abar_s) x0 + sqrt(1 - abar_s) eps, s (B,) 1-based steps."""
        if noise is None:
            noise = torch.randn_like(x0)
        return (self.sqrt_alphas_cumprod[s - 1, None] * x0
                + self.sqrt_one_minus_alphas_cumprod[s - 1, None] * noise)

    def q_posterior(self, x0, xt, t):
        """Mean and variance of q(x_{t-1} | x_t, x_0) on the full schedule, t (B,) 1-based."""
        mean = self.posterior_coef_x0[t - 1, None] * x0 + self.posterior_coef_xt[t - 1, None] * xt
        return mean, self.posterior_variance[t - 1]

    def step_embeddings(self) -> torch.Tensor:
        """(T, H) d_s for s = 1..T (the MLP runs on T rows, not B)."""
        idx = torch.arange(self.diffusion_steps, device=self.betas.device) * self.step_scale
        return self.step_mlp(sinusoid(idx, self.hidden_size))

    # ------------------------------------------------------------------ history
    def _buckets(self, lengths: list[int]) -> list[tuple[int, int]]:
        """Split rows sorted by descending length into (start, end) chunks minimising
        padded tokens + a per-chunk overhead (DP over distinct lengths)."""
        groups = []  # (length, rows), descending
        for n in lengths:
            if groups and groups[-1][0] == n:
                groups[-1][1] += 1
            else:
                groups.append([n, 1])
        g = len(groups)
        starts = [0]
        for _, rows in groups:
            starts.append(starts[-1] + rows)
        best = [0.0] + [math.inf] * g  # best[j]: cost of the first j groups
        cut = [0] * (g + 1)
        for j in range(1, g + 1):
            for i in range(j):  # chunk = groups i..j-1, width groups[i] length
                cost = best[i] + (starts[j] - starts[i]) * groups[i][0] + self.BUCKET_OVERHEAD_TOKENS
                if cost < best[j]:
                    best[j], cut[j] = cost, i
        bounds, j = [], g
        while j > 0:
            bounds.append((starts[cut[j]], starts[j]))
            j = cut[j]
        return bounds[::-1]

    def _prepare(self, item_seq, item_seq_len):
        """Sort the batch by length, split it into buckets and embed each bucket's history.

        Returns (perm, chunks): ``perm`` (B,) sorted order or None; each chunk is a dict
        with rows [start, end) of the sorted batch, its embedded history ``e`` (n, Lc, H)
        (dropout + LayerNorm applied), ``last`` (n,) or None and ``key_mask``.
        """
        lengths = item_seq_len.clamp(min=1, max=item_seq.shape[1])
        if self.attention_padding == "release":
            return None, [self._embed_left_padded(item_seq, lengths)]
        mode = self.length_buckets
        bucket = mode == "true" or (mode == "auto" and not item_seq.is_cuda)
        if bucket:
            lengths, perm = torch.sort(lengths, descending=True, stable=True)
            item_seq = item_seq[perm]
            bounds = self._buckets(lengths.tolist())
        else:
            perm = None
            bounds = [(0, item_seq.shape[0])]
        chunks = []
        for start, end in bounds:
            lens = lengths[start:end]
            width = int(lens[0]) if bucket else item_seq.shape[1]
            seq = item_seq[start:end, :width]
            e = self.item_embedding(seq)
            if self.position_embedding is not None:
                e = e + self.position_embedding.weight[:width]
            e = F.dropout(e, self.emb_dropout_prob, self.training)
            e = self.emb_norm(e)
            uniform = bucket and int(lens[-1]) == width
            key_mask = None if uniform else (
                torch.arange(width, device=seq.device)[None, :] < lens[:, None])[:, None, None, :]
            chunks.append({"start": start, "end": end, "e": e, "last": None if uniform else lens - 1,
                           "key_mask": key_mask})
        return perm, chunks

    def _embed_left_padded(self, item_seq, lengths) -> dict:
        """The whole batch as one chunk in the authors' layout: left-padded to MAX_LEN, the
        padded query rows masked (``release_attention_bias``), the output at the last column."""
        seq = left_pad(item_seq, lengths, self.max_len)
        e = self.item_embedding(seq)
        if self.position_embedding is not None:
            e = e + self.position_embedding.weight[: self.max_len]
        e = self.emb_norm(F.dropout(e, self.emb_dropout_prob, self.training))
        return {"start": 0, "end": seq.shape[0], "e": e, "last": None, "key_mask": None,
                "hide": release_attention_mask(seq == 0, self.causal)}

    def _draw_lambda(self, batch: int, width: int, perm):
        """lambda ~ N(delta, delta) of shape (B, max(width, MAX_LEN), 1 or H), in sorted order."""
        cols = max(width, self.max_len)
        last = self.hidden_size if self.lambda_per == "element" else 1
        lam = torch.randn(batch, cols, last, device=self.betas.device) * self.lambda_scale + self.lambda_scale
        return lam if perm is None else lam[perm]

    def _approximate(self, chunks, v, lam):
        """x0_hat (B, H), sorted order, from v = x + d (B, H) and lambda; Eq. 13 + f_theta."""
        outs = []
        for c in chunks:
            e = c["e"]
            n, width = e.shape[0], e.shape[1]
            z = torch.addcmul(e, lam[c["start"]:c["end"], :width], v[c["start"]:c["end"], None, :])
            if self.blocks is not None:
                attn_mask = None if self.causal else c["key_mask"]
                h = z
                for block in self.blocks[:-1]:
                    h = block(h, attn_mask, self.causal, hide=c.get("hide"))
                out = self.blocks[-1].forward_last(h, c["last"], c["key_mask"])
            else:
                h, _ = self.gru(z)
                out = h[:, -1] if c["last"] is None else h[torch.arange(n, device=h.device), c["last"]]
            outs.append(out)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, 0)
        out = F.dropout(out, self.hidden_dropout_prob, self.training)
        return self.out_norm(out)

    # ------------------------------------------------------------------ training
    def calculate_loss(self, interaction):
        item_seq = interaction[self.ITEM_SEQ]
        target = interaction[self.POS_ITEM_ID]
        batch = item_seq.shape[0]
        perm, chunks = self._prepare(item_seq, interaction[self.ITEM_SEQ_LEN])
        s = torch.randint(1, self.diffusion_steps + 1, (batch,), device=item_seq.device)
        e_target = self.item_embedding(target)
        if self.train_x0 == "sample":
            x0 = self.x0_coef[0] * e_target + self.x0_coef[1] * torch.randn_like(e_target)
        else:
            x0 = e_target
        # F.embedding, not step_embeddings()[s - 1]: the backward of advanced indexing with
        # repeated indices accumulates in a thread-dependent order on CPU (runs differed)
        v = self.q_sample(x0, s) + F.embedding(s - 1, self.step_embeddings())
        lam = self._draw_lambda(batch, item_seq.shape[1], perm)
        if perm is not None:
            v, target = v[perm], target[perm]
        x0_hat = self._approximate(chunks, v, lam)
        logits = x0_hat @ self.item_embedding.weight.t()
        return F.cross_entropy(logits, target)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def reverse(self, item_seq, item_seq_len) -> torch.Tensor:
        """x_0 (B, H) by ``reverse_steps`` posterior steps from x_T (Eqs. 17-18).

        With ``lambda_scale: 0`` (the "no diffusion" control) the approximator never sees
        x_t, every step's x0_hat is the same, and the last step returns it: one pass gives
        exactly that output.
        """
        batch, width = item_seq.shape
        perm, chunks = self._prepare(item_seq, item_seq_len)
        d = self.step_embeddings()[self.rev_step_index]  # (K, H), visiting order
        if self.reverse_start == "zero":
            x = torch.zeros(batch, self.hidden_size, device=item_seq.device)
        else:
            x = torch.randn(batch, self.hidden_size, device=item_seq.device)
        x = x if perm is None else x[perm]
        steps = self.rev_step_index.shape[0]
        for k in range(steps - 1 if self.lambda_scale == 0 else 0, steps):
            lam = self._draw_lambda(batch, width, perm)
            x0_hat = self._approximate(chunks, x + d[k], lam)
            mean = self.rev_coef_x0[k] * x0_hat + self.rev_coef_xt[k] * x
            if k < steps - 1:
                noise = torch.randn(batch, self.hidden_size, device=x.device)
                x = torch.addcmul(mean, self.rev_sigma[k], noise if perm is None else noise[perm])
            else:
                x = mean
        if perm is not None:
            x = torch.empty_like(x).index_copy_(0, perm, x)
        return x

    def _score_all(self, x0):
        """(B, n_items) Eq. 19 scores of every item (or -||x0 - e_i||^2 for "w R*")."""
        emb = self.item_embedding.weight
        if self.rounding == "inner_product":
            return x0 @ emb.t()
        return 2 * x0 @ emb.t() - x0.pow(2).sum(-1, keepdim=True) - emb.pow(2).sum(-1)[None]

    def full_sort_predict(self, interaction):
        x0 = self.reverse(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        return self._score_all(x0)

    def predict(self, interaction):
        x0 = self.reverse(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
        emb = self.item_embedding(interaction[self.ITEM_ID])
        if self.rounding == "inner_product":
            return (x0 * emb).sum(-1)
        return -(x0 - emb).pow(2).sum(-1)
