"""ACVAE: Xie, Liu, Zhang, Zhou & Yu, "Adversarial and Contrastive Variational
Autoencoder for Sequential Recommendation", WWW 2021.

Equations implemented (named by content; architecture and loss weights as in the
authors' code, see "Reference" below):

- Recurrent + convolutional sequence encoder: item embedding -> dropout -> GRU
  (global dependencies) -> a causal convolutional block (1x1 conv, width-5 causal
  conv, 1x1 conv, residual; local dependencies) -> linear head giving z_t.  The
  posterior q(z_t | x_{1:t}) is *implicit*: noise eps ~ N(0, I) is mapped through
  tanh(W eps + b) and added to the hidden states before each of the first two conv
  layers (the AVB "noise input"), so q need not be Gaussian.
- Decoder: z_t -> tanh layer -> logits over all items; reconstruction term = the
  multinomial log-likelihood of the next item at every step (summed over steps).
- Adversarial Variational Bayes objective: a discriminator T(x_t, z_t)
  (residual MLP on the step's item embedding and z; its output already contains the
  log-prior term 0.5 z^2, as in the authors' code) is trained with the logistic loss
  to tell posterior samples z ~ q(z | x) from prior samples z ~ N(0, I); at
  its optimum T(x, z) = log q(z | x) - log p(z), so the generator's KL term of the
  ELBO is replaced by alpha * T(x, z) (the AVB form of the ELBO).
- Contrastive loss: a recurrent critic T'(x_{1:t}, z_t) (GRU over the
  concatenated item embeddings and latents) scores matched pairs against latents of
  another user of the batch; -log sigma(T'(x, z_u)) - log(1 - sigma(T'(x, z_u'))),
  weight beta, minimised by both the encoder and the critic (it maximises a
  Jensen-Shannon bound on the mutual information between sequence and latent, which
  makes latents user-specific).
- Loss = reconstruction + alpha * T(x, z) + beta * contrastive (+ the discriminator's
  own loss, see below).  alpha = 0.05 weighs the adversarial KL term and beta = 0.1
  the contrastive term (``kl_weight`` and ``contrast_weight`` of the authors' code).

Reference: ACVAE/ACVAE-PyTorch (the authors' PyTorch release), commit
9a1dac69bc24295959c3bcaf5095b3bba8dab63f: ``model.py`` (``Model``, ``FCEncoderCNN``,
``Adversary``, ``GRUAdversary``), ``loss_func.py``, ``train.py`` (optimizers at lines
133-152, one training step at lines 181-210).  Remaining deviations, one line each:

- each training prefix contributes the terms of its last step only, so each step
  counts once per epoch, as the authors' per-sequence sum does (see below);
- loss normalisation: a mean over the batch's instances (one step each); the authors
  sum a user's steps and average over 64 users.  AdamW does not see the difference, but
  an SGD step on the encoder, the critic and T here is about 1/T_bar of theirs at the
  same learning rate (T_bar = mean steps per user: 5.9 on Beauty, 163 on ML-1M).
  ``loss_scale: T_bar`` multiplies the loss by T_bar and so restores their step sizes
  (the diagnosis run ``ACVAE-usersum``); the default 1 keeps the mean;
- the min-max runs in one backward with detached parameters/inputs (same gradients);
- contrastive negatives are the next instance of the batch (the authors' next user);
- no encoder noise at evaluation (the authors sample it), so scores are deterministic;
- leave-one-out with full ranking and early stopping on validation (the authors: a
  time split, last 20 % of each user's items, 350 epochs, no early stopping);
- the reference ``Model``'s unused ``linear_o`` and ``linear1`` are omitted;
- KL annealing off, as in the authors' default (``anneal: False``).

Adaptations to this harness:

- Leave-one-out next-item prediction with full ranking over all items; each training
  instance is a prefix ``item_id_list`` = h[0..n-1] with target ``item_id`` = h[n]
  (the harness feeds every prefix n = 1..N of a user's sequence).
- One step per instance (the per-sequence sum over steps is spread over the
  prefixes): an instance contributes only the terms of its last real step t = n-1:
  the reconstruction -log p(h[n] | z_t) (next-item prediction of the target), the
  adversarial term T(x_t, z_t), the discriminator's loss at (x_t, z_t), and the
  contrastive critic's output at step t (the critic GRU still reads the pairs
  (x_s, z_s), s <= t, as before).  Every step t of a user's sequence is the last step
  of exactly one prefix (n = t+1), so one epoch counts each step's terms once, as the
  authors' per-sequence sum over steps does; decoding every real step of every prefix
  would instead count step t once per prefix containing it (quadratic cost and
  weighting).  All modules are causal, so the step-t terms depend only on h[0..t];
  a history cut to ``MAX_ITEM_LIST_LENGTH`` changes only what the encoder sees.
  Each term is averaged over the instances of the batch.
- One loss, one backward: a single ``calculate_loss`` returns the sum of
    (a) the generator objective: reconstruction + alpha * T(x, z) + beta * contrastive,
        with T evaluated through *detached copies of its parameters*
        (``torch.func.functional_call``), so this term moves the encoder and the
        embeddings but never the discriminator, and
    (b) the discriminator objective: the logistic loss of T on *detached* x, z and
        prior samples, so this term moves only the discriminator.
  One backward thus gives each player the gradient of its own objective (min-max
  without gradient reversal); the critic T' is cooperative and simply minimises (a).
  The authors run two backward passes (the VAE + critic loss, then T's loss on detached
  inputs); the gradients each optimizer steps on are the same.
- Optimizers (``configure_optimizers``, models/CONTRACT.md "Optional hooks"), as the
  authors' ``train.py``: AdamW(``learning_rate``, weight decay ``vae_weight_decay``) over
  the VAE (embedding, GRU, encoder, decoder); SGD(``critic_learning_rate``, weight decay
  ``critic_weight_decay``) over the encoder *and* the contrastive critic, so the encoder
  is stepped by both, as there; SGD(``discriminator_learning_rate``, weight decay
  ``discriminator_weight_decay``) over T.  ``optimizers: single`` instead trains
  everything with one Adam(``learning_rate``, ``weight_decay``), this suite's earlier
  setting.  RecBole's own Trainer never calls the hook and uses its single optimizer.
  Measured on Beauty at the quick budget (CPU, seeds 0 and 1): test HR@10 1.25 / 1.20 %
  and NDCG@10 0.553 / 0.530 % with the authors' optimizers, 1.20 / 1.20 % and
  0.537 / 0.544 % with the single Adam (which reproduces the earlier records exactly).
- The model keeps its own objective; the harness's ``loss_type`` is ignored.
- Contrastive negatives: the latents of the next instance of the batch (its whole
  latent sequence, read by the critic up to step t), a binary JSD-style estimator with
  one negative, as the authors' batch rolled by one; not a softmax InfoNCE.
- Evaluation: scores are the decoder logits at the last real position, with the
  encoder's noise set to zero, so scores are deterministic (the authors sample noise
  at evaluation too).  Already-seen items are not masked out.
- The step's data x fed to T and T' is the item embedding at that step, as in the
  authors' code.  Every module is causal in time (GRU, left-padded conv, GRU critic),
  so outputs at real positions do not depend on trailing padding.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from torch.func import functional_call


class NoiseInjection(nn.Module):
    """x + tanh(W eps + b), eps ~ N(0, I) in training; eps = 0 in evaluation."""

    def __init__(self, width):
        super().__init__()
        self.linear = nn.Linear(width, width)

    def forward(self, x):
        eps = torch.randn_like(x) if self.training else torch.zeros_like(x)
        return x + torch.tanh(self.linear(eps))


class CausalConvEncoder(nn.Module):
    """GRU states (B, L, H) -> implicit-posterior latents (B, L, latent); causal in L."""

    def __init__(self, width, latent_size, kernel_size=5, dropout=0.5):
        super().__init__()
        self.kernel_size = kernel_size
        self.noise = NoiseInjection(width)
        self.pointwise_in = nn.Conv1d(width, width, kernel_size=1)
        self.causal = nn.Conv1d(width, 2 * width, kernel_size=kernel_size)
        self.pointwise_out = nn.Conv1d(2 * width, width, kernel_size=1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, latent_size)

    def forward(self, h):
        y = F.softplus(self.pointwise_in(self.noise(h).transpose(1, 2))).transpose(1, 2)
        y = F.pad(self.noise(y).transpose(1, 2), (self.kernel_size - 1, 0))  # left pad only
        y = F.softplus(self.causal(y))
        y = F.softplus(self.pointwise_out(y)).transpose(1, 2)
        return self.head(self.dropout(h + y))


class PriorDiscriminator(nn.Module):
    """T(x, z): per-step, per-dimension logits of 'z came from q(z|x)' vs 'from p(z)'."""

    def __init__(self, x_size, latent_size, width=128, blocks=2, dropout=0.2):
        super().__init__()
        self.inp = nn.Linear(x_size + latent_size, width)
        self.inner = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.outer = nn.ModuleList(nn.Linear(width, width) for _ in range(blocks))
        self.out = nn.Linear(width, latent_size)
        self.drop_in, self.drop_out = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, x, z):
        h = self.drop_in(self.inp(torch.cat([x, z], dim=-1)))
        for inner, outer in zip(self.inner, self.outer):
            h = F.elu(h + outer(inner(h)))
        return self.drop_out(self.out(h)) + 0.5 * z.pow(2)


class ContrastiveCritic(nn.Module):
    """T'(x_{1:t}, z_t): a GRU over [item embedding, latent] -> one logit per step."""

    def __init__(self, x_size, latent_size, width=128):
        super().__init__()
        self.gru = nn.GRU(x_size + latent_size, width, batch_first=True)
        self.out = nn.Linear(width, 1)

    def forward(self, x, z):
        h, _ = self.gru(torch.cat([x, z], dim=-1))
        return self.out(F.gelu(h)).squeeze(-1)


OPTIMIZER_MODES = ("authors", "single")
OPTIMIZER_KEYS = ("learning_rate", "weight_decay", "vae_weight_decay", "critic_learning_rate",
                  "critic_weight_decay", "discriminator_learning_rate", "discriminator_weight_decay")


def optimizer_settings(config) -> dict:
    """The optimizer keys of the model's config (YAML), checked and as plain floats."""
    mode = str(config["optimizers"]).lower()
    if mode not in OPTIMIZER_MODES:
        raise ValueError(f"ACVAE: optimizers must be one of {OPTIMIZER_MODES}, got {mode!r}")
    settings = {key: float(config[key] or 0.0) for key in OPTIMIZER_KEYS}
    settings["optimizers"] = mode
    return settings


class ACVAE(SequentialRecommender):
    """Recurrent-convolutional VAE with an AVB adversarial posterior and contrastive loss."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.embedding_size = config["embedding_size"]
        self.hidden_size = config["hidden_size"]
        self.latent_size = config["latent_size"]
        self.alpha = float(config["kl_weight"])
        self.beta = float(config["contrast_weight"])
        self.loss_scale = float(config["loss_scale"] if config["loss_scale"] is not None else 1.0)  # YAML: absent = 1
        if self.loss_scale <= 0:
            raise ValueError(f"ACVAE: loss_scale must be > 0, got {self.loss_scale}")
        self.optimizer_settings = optimizer_settings(config)

        self.item_embedding = nn.Embedding(self.n_items, self.embedding_size, padding_idx=0)
        self.embedding_dropout = nn.Dropout(config["embedding_dropout"])
        self.gru = nn.GRU(self.embedding_size, self.hidden_size, batch_first=True)
        self.encoder = CausalConvEncoder(self.hidden_size, self.latent_size,
                                         dropout=config["encoder_dropout"])
        self.dec_hidden = nn.Linear(self.latent_size, self.embedding_size)
        self.dec_out = nn.Linear(self.embedding_size, self.n_items)
        nn.init.xavier_normal_(self.dec_hidden.weight)
        nn.init.xavier_normal_(self.dec_out.weight)

        self.discriminator = PriorDiscriminator(self.embedding_size, self.latent_size,
                                                config["discriminator_size"])
        self.critic = ContrastiveCritic(self.embedding_size, self.latent_size,
                                        config["discriminator_size"])

    # ------------------------------------------------------------------ optimizers
    def parameter_groups(self) -> dict:
        """The authors' three parameter sets: 'vae' (everything but T and T'),
        'critic' (the encoder and T', so the encoder is in two sets, as in their
        ``train.py``) and 'discriminator' (T)."""
        players = {id(p) for m in (self.discriminator, self.critic) for p in m.parameters()}
        return {
            "vae": [p for p in self.parameters() if id(p) not in players],
            "critic": list(self.encoder.parameters()) + list(self.critic.parameters()),
            "discriminator": list(self.discriminator.parameters()),
        }

    def configure_optimizers(self) -> list:
        """Harness hook (models/CONTRACT.md): the authors' AdamW + SGD + SGD, or one Adam.

        The engine runs one backward of ``calculate_loss`` and steps every optimizer;
        the loss already routes each player's own gradient to its parameters.
        """
        cfg = self.optimizer_settings
        if cfg["optimizers"] == "single":
            return [torch.optim.Adam(self.parameters(), lr=cfg["learning_rate"],
                                     weight_decay=cfg["weight_decay"])]
        groups = self.parameter_groups()
        return [
            torch.optim.AdamW(groups["vae"], lr=cfg["learning_rate"], weight_decay=cfg["vae_weight_decay"]),
            torch.optim.SGD(groups["critic"], lr=cfg["critic_learning_rate"],
                            weight_decay=cfg["critic_weight_decay"]),
            torch.optim.SGD(groups["discriminator"], lr=cfg["discriminator_learning_rate"],
                            weight_decay=cfg["discriminator_weight_decay"]),
        ]

    # ------------------------------------------------------------------ model
    def encode(self, item_seq):
        """(B, L) items -> item embeddings x (B, L, E) and latents z (B, L, latent)."""
        x = self.item_embedding(item_seq)
        h, _ = self.gru(self.embedding_dropout(x))
        return x, self.encoder(h)

    def decode(self, z):
        return self.dec_out(torch.tanh(self.dec_hidden(z)))

    def discriminator_loss(self, x, z):
        """Logistic loss of T on (B, .) step inputs: posterior samples -> 1, prior -> 0.

        Inputs are detached: this term trains only the discriminator.
        """
        x, z = x.detach(), z.detach()
        prior = torch.randn_like(z)
        t_post, t_prior = self.discriminator(torch.cat([x, x]), torch.cat([z, prior])).chunk(2)
        per_dim = F.softplus(-t_post) + F.softplus(t_prior)
        return per_dim.mean(-1).mean()

    def adversarial_kl(self, x, z):
        """alpha-free generator KL term E_q[T(x, z)] with T's parameters frozen."""
        frozen = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        t = functional_call(self.discriminator, frozen, (x, z))
        return t.mean(-1).mean()

    def contrastive_loss(self, x, z, last):
        """-log s(T'(x, z_u)) - log(1 - s(T'(x, z_u'))) at step ``last`` of each instance,
        u' = next instance in the batch; x, z are whole (B, L, .) sequences."""
        shuffled = torch.roll(z, shifts=-1, dims=0)
        t_all = self.critic(torch.cat([x, x]), torch.cat([z, shuffled]))  # (2B, L), causal
        t_joint, t_shuffled = t_all.gather(1, torch.cat([last, last]).view(-1, 1)).chunk(2)
        return (F.softplus(-t_joint) + F.softplus(t_shuffled)).mean()

    def loss_terms(self, interaction):
        """The four terms of the single loss (see the module docstring), unweighted.

        Every term is taken at the last real step of each instance only.
        """
        item_seq = interaction[self.ITEM_SEQ]
        item_len = interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        last = item_len - 1

        x, z = self.encode(item_seq)  # (B, L, .), causal over the whole history
        x_t, z_t = self.gather_indexes(x, last), self.gather_indexes(z, last)
        log_probs = F.log_softmax(self.decode(z_t), dim=-1)  # (B, n_items): one step each
        reconstruction = -log_probs.gather(1, target.view(-1, 1)).mean()
        return {
            "reconstruction": reconstruction,
            "adversarial_kl": self.adversarial_kl(x_t, z_t),
            "contrastive": self.contrastive_loss(x, z, last),
            "discriminator": self.discriminator_loss(x_t, z_t),
        }

    def calculate_loss(self, interaction):
        t = self.loss_terms(interaction)
        generator = (t["reconstruction"] + self.alpha * t["adversarial_kl"]
                     + self.beta * t["contrastive"])
        return self.loss_scale * (generator + t["discriminator"])

    # ------------------------------------------------------------------ scoring
    def _last_logits(self, interaction):
        _, z = self.encode(interaction[self.ITEM_SEQ])
        return self.decode(self.gather_indexes(z, interaction[self.ITEM_SEQ_LEN] - 1))

    def predict(self, interaction):
        logits = self._last_logits(interaction)
        return logits.gather(1, interaction[self.ITEM_ID].view(-1, 1)).squeeze(1)

    def full_sort_predict(self, interaction):
        return self._last_logits(interaction)
