"""TiMiRec: Wang et al., "Target Interest Distillation for Multi-Interest Recommendation",
CIKM 2022.

Written for this suite from the paper and the authors' reference implementation
(THUwangcy/ReChorus, branch CIKM22, ``TiMiRec.py``); no code is copied.  Three parts:

Multi-interest extractor (paper: "multi-interest extractor"; the authors' ``add_pos`` and
``add_trm`` switches, both on):
    h_t = e_{i_t} + p_{n - t}        item embedding + learned embedding of the distance to
                                     the end of the history (1 = most recent, 0 = padding);
    H = TransformerLayer(h)          one single-head, bidirectional self-attention block
                                     (residual + LayerNorm, ReLU feed-forward of width d,
                                     residual + LayerNorm), padding masked as keys, padded
                                     outputs zeroed;
    A = softmax_t(W_2 tanh(W_1 H))   (K x n, W_1: d -> attn_size, W_2: attn_size -> K);
    M = A H                          the K interest vectors m_1..m_K.

Interest distribution generator (paper: "interest distribution generator"): a GRU over a
separate item embedding of the history; its last hidden state goes through ``n_layers`` - 1
blocks [Linear(d, d), Dropout(dropout_prob), ReLU] and a final Linear(d, K): logits z.
The user vector is u = sum_k softmax(z)_k m_k and an item's score is u^T e_i.

Target interest distillation (paper: the auxiliary loss that uses the target as supervision):
    target distribution  q = softmax(cos(m_k, e_target) / tau)   (no gradient into q),
    predicted distribution p = softmax(z / tau),
    L = CE(u, target) + tau^2 * KL(q || p)                       (batch mean).

Two stages, as in the reference code (``--stage pretrain`` then ``--stage finetune``):
  stage 1 (pre-training): the extractor alone, ComiRec-style: the interest with the largest
    inner product with the target is the user vector for the loss, and items are ranked by
    max_k m_k^T e_i; the generator gets no gradient;
  stage 2 (fine-tuning): the whole model with L above (the extractor keeps training).
Under the harness (models/CONTRACT.md, "Optional hooks") stage 1 trains to early stopping:
when validation's patience runs out the engine restores the best stage-1 checkpoint and
calls ``advance_stage()``, which moves the model to stage 2; the engine then trains stage 2
with fresh optimizers and its own patience, and reports the best stage-2 checkpoint (the
record's ``checkpoint.stage``).  ``pretrain_epochs`` only caps stage 1: ``set_epoch(epoch)``
moves to stage 2 at epoch ``pretrain_epochs`` if early stopping has not done so before.
Stages only ever advance.  Under RecBole's own ``Trainer``, which calls neither hook,
training calls of ``calculate_loss`` are counted instead: the first ``pretrain_steps`` are
stage 1.  ``pretrain_epochs: 0`` trains stage 2 from scratch (the reference's "train from
scratch" fallback).  The current stage is a buffer, so a checkpoint carries the stage it
was saved in and a model rebuilt from it scores the same way; a model whose stages the
harness drives keeps its (later) stage when older weights are loaded into it.

Reference: THUwangcy/ReChorus, branch CIKM22, commit b53832b162571ddb898db3a6fa359881e35a7352
(``src/models/sequential/TiMiRec.py``, ``src/helpers/BaseRunner.py``, ``src/run.sh``).
Its stage 1 runs ``BaseRunner.train`` to early stopping and saves the best validation
extractor to a file; stage 2 is a second process that loads it (``load_model`` of the
extractor's weights), builds a fresh optimizer, early-stops again and reports its own best
validation checkpoint.  Remaining deviations, one line each:

- CE over all items instead of the reference's loss against sampled negatives;
- both stages in one run; stage 1 additionally capped at ``pretrain_epochs`` epochs (the
  reference caps each stage at ``--epoch`` 200), and early stopping is the harness's
  patience rule (the reference: no stop before 21 epochs, then 10 non-increasing
  validations or 20 epochs since the best);
- when the cap (not early stopping) ends stage 1, stage 2 starts from the last stage-1
  weights and keeps the optimizer state (the engine restores the best weights and builds
  fresh optimizers only after ``advance_stage``);
- weight decay applies to every parameter, biases included (the reference exempts them);
- the harness's ``MAX_ITEM_LIST_LENGTH`` window instead of the reference's 20 items;
- ML-1M's K / temperature / layers are a profile override, not a dataset key;
- leave-one-out with full ranking of every item (the reference ranks against sampled
  negatives).

Adaptations to this harness:
- leave-one-out next-item prediction on RecBole's every-prefix training instances (the
  reference also trains on every prefix, with a 20-item history; here the harness's
  ``MAX_ITEM_LIST_LENGTH`` window);
- recommendation loss: full softmax over all items (CE) instead of the reference's
  BPR-style loss against sampled negatives (``BaseModel.loss``; with ReChorus's default
  ``--num_neg 1`` it is BPR against one uniform negative); ``loss_type: BPR`` trains with that
  (``models/negatives.py``), for the diagnosis run that measures what the loss does
  (``reports/full/diagnosis.md``);
- evaluation: full ranking over all items (stage 1: max_k m_k^T e_i, stage 2: u^T e_i);
- one run holds both stages (the reference runs two processes and hands the extractor over
  through a file); the stage hooks above give each stage its own early stopping, so the
  reported checkpoint always comes from the last stage trained;
- weight decay (harness ``weight_decay``) applies to every parameter, biases included (the
  reference exempts biases);
- dataset-specific settings cannot be keyed by dataset inside the model: the YAML holds the
  Beauty values (K = 4, tau = 0.1, 1 layer); ML-1M (K = 2, tau = 0.5, 2 layers) is a profile
  override;
- initialisation as in the reference: N(0, 0.01) for embeddings, Linear weights and biases;
  PyTorch defaults for the GRU and LayerNorm.

Padding: keys at padded positions are masked, padded outputs zeroed before pooling, pooling
weights there are exactly 0, the GRU state is read at position ``item_length - 1``, and
positions count from the end of the real history, so trailing padding changes no score.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from recbole.model.abstract_recommender import SequentialRecommender

from models.negatives import bpr_loss

_NEG = -1.0e9  # attention logit for padding: exp() underflows to exactly 0


class _TransformerBlock(nn.Module):
    """Single-head bidirectional self-attention + ReLU feed-forward, post-LayerNorm."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.ff1 = nn.Linear(d_model, d_ff)
        self.ff2 = nn.Linear(d_ff, d_model)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, x, mask):
        """x (B, L, d), mask (B, L) bool (True = real item)."""
        scores = torch.bmm(self.q(x), self.k(x).transpose(1, 2)) / math.sqrt(x.size(-1))
        scores = scores.masked_fill(~mask.unsqueeze(1), _NEG)  # padded keys
        context = torch.bmm(torch.softmax(scores, dim=-1), self.v(x))
        context = self.norm1(context + x)
        return self.norm2(self.ff2(torch.relu(self.ff1(context))) + context)


class TiMiRec(SequentialRecommender):
    """Multi-interest extractor + interest distribution generator + target distillation."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.hidden_size = d = config["hidden_size"]
        self.num_interest = k = config["num_interest"]
        self.temperature = float(config["temperature"])
        self.pretrain_epochs = int(config["pretrain_epochs"])
        self.pretrain_steps = int(config["pretrain_steps"])
        self.loss_type = config["loss_type"]
        if self.loss_type not in ("CE", "BPR"):
            raise ValueError(f"TiMiRec: loss_type must be CE (full softmax) or BPR (one sampled negative), "
                             f"got {self.loss_type!r}")
        n_layers = int(config["n_layers"])
        if n_layers < 1:
            raise ValueError("TiMiRec: n_layers must be >= 1")

        # Multi-interest extractor.
        self.item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.position_embedding = nn.Embedding(self.max_seq_length + 1, d)
        self.transformer = _TransformerBlock(d, d)
        self.attn_w1 = nn.Linear(d, config["attn_size"])
        self.attn_w2 = nn.Linear(config["attn_size"], k)

        # Interest distribution generator.
        self.gen_item_embedding = nn.Embedding(self.n_items, d, padding_idx=0)
        self.gen_gru = nn.GRU(d, d, batch_first=True)
        proj = []
        for _ in range(n_layers - 1):
            proj += [nn.Linear(d, d), nn.Dropout(config["dropout_prob"]), nn.ReLU()]
        proj.append(nn.Linear(d, k))
        self.gen_proj = nn.Sequential(*proj)

        self.apply(self._init_weights)
        # Stage 1 = pre-training the extractor, 2 = fine-tuning with distillation.  The
        # Python ints drive the model (no device sync per batch); the buffers mirror them so
        # that a checkpoint carries its stage (restored by the load hook below).
        self._stage = 1 if self.pretrain_epochs > 0 else 2
        self._train_calls = 0
        self._hook_driven = False  # True once the harness drives the stages (set_epoch / advance_stage)
        self.register_buffer("stage", torch.tensor(self._stage))
        self.register_buffer("train_calls", torch.tensor(0))
        self.register_load_state_dict_post_hook(TiMiRec._sync_from_buffers)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.01)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.normal_(module.bias, mean=0.0, std=0.01)

    # ----------------------------------------------------------------- stages
    def set_epoch(self, epoch: int) -> bool:
        """Harness hook: the cap on stage 1; stage 2 from epoch ``pretrain_epochs`` on.

        Returns True when this call moves the model to stage 2.  It never moves back, so a
        model that early stopping already advanced stays in stage 2.
        """
        self._hook_driven = True
        if self._stage == 1 and epoch >= self.pretrain_epochs:
            self._set_stage(2)
            return True
        return False

    def advance_stage(self) -> bool:
        """Harness hook, called when early stopping's patience runs out.

        Stage 1 -> 2 (True: training goes on with the distillation objective); in stage 2
        there is no next stage (False: training stops).
        """
        self._hook_driven = True
        if self._stage == 1:
            self._set_stage(2)
            return True
        return False

    def _set_stage(self, stage: int) -> None:
        if stage != self._stage:
            self._stage = stage
            self.stage.fill_(stage)

    def _count_training_call(self) -> None:
        """Without the stage hooks (RecBole's Trainer), switch after ``pretrain_steps`` calls."""
        if self._hook_driven or not self.training or self.pretrain_epochs <= 0:
            return
        if self._train_calls >= self.pretrain_steps:
            self._set_stage(2)
        self._train_calls += 1
        self.train_calls.fill_(self._train_calls)

    @staticmethod
    def _sync_from_buffers(module, incompatible_keys) -> None:
        """After ``load_state_dict``: take the checkpoint's stage, except that a model whose
        stages the harness drives never moves back (the engine restores the best weights of
        a stage that has just ended into a model that may already be in the next one)."""
        loaded = int(module.stage)
        module._stage = max(module._stage, loaded) if module._hook_driven else loaded
        module.stage.fill_(module._stage)
        module._train_calls = int(module.train_calls)

    @property
    def finetuning(self) -> bool:
        """True in stage 2 (distillation), False while pre-training the extractor."""
        return self._stage == 2

    # ----------------------------------------------------------------- modules
    def extract_interests(self, item_seq, item_seq_len):
        """(B, L) right-padded history -> (B, K, d) interest vectors."""
        mask = item_seq != 0
        length = item_seq.size(1)
        steps = torch.arange(length, device=item_seq.device)
        position = (item_seq_len.unsqueeze(1) - steps.unsqueeze(0)) * mask  # n - t, 0 at padding
        h = self.item_embedding(item_seq) + self.position_embedding(position)
        h = self.transformer(h, mask) * mask.unsqueeze(-1).to(h.dtype)
        logits = self.attn_w2(torch.tanh(self.attn_w1(h)))  # (B, L, K)
        logits = logits.masked_fill(~mask.unsqueeze(-1), _NEG).transpose(1, 2)
        return torch.bmm(torch.softmax(logits, dim=-1), h)

    def interest_logits(self, item_seq, item_seq_len):
        """Generator: (B, L) history -> (B, K) logits of the interest distribution."""
        out, _ = self.gen_gru(self.gen_item_embedding(item_seq))
        last = self.gather_indexes(out, (item_seq_len - 1).clamp(min=0))
        return self.gen_proj(last)

    def forward(self, item_seq, item_seq_len):
        """Stage 2 user vector u = sum_k softmax(z)_k m_k, with M and z."""
        interests = self.extract_interests(item_seq, item_seq_len)
        logits = self.interest_logits(item_seq, item_seq_len)
        user = torch.einsum("bk,bkd->bd", torch.softmax(logits, dim=-1), interests)
        return user, interests, logits

    # ----------------------------------------------------------------- harness API
    def _rec_loss(self, user, table, target):
        """(B, d) user vectors -> the recommendation loss: full softmax, or the reference's BPR."""
        if self.loss_type == "BPR":  # ReChorus's pairwise loss at its default of one negative
            return bpr_loss(user, table, target)
        return F.cross_entropy(user @ table.t(), target)

    def calculate_loss(self, interaction):
        self._count_training_call()
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        target = interaction[self.POS_ITEM_ID]
        target_emb = self.item_embedding(target)
        table = self.item_embedding.weight
        if not self.finetuning:
            interests = self.extract_interests(item_seq, item_seq_len)
            best = torch.einsum("bkd,bd->bk", interests, target_emb).argmax(dim=-1)
            user = interests[torch.arange(interests.size(0), device=best.device), best]
            return self._rec_loss(user, table, target)
        user, interests, logits = self.forward(item_seq, item_seq_len)
        rec_loss = self._rec_loss(user, table, target)
        tau = self.temperature
        with torch.no_grad():
            target_sim = F.cosine_similarity(interests, target_emb.unsqueeze(1), dim=-1)
            target_dist = torch.softmax(target_sim / tau, dim=-1)
        kl = F.kl_div(F.log_softmax(logits / tau, dim=-1), target_dist, reduction="batchmean")
        return rec_loss + tau * tau * kl

    def predict(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        item_emb = self.item_embedding(interaction[self.ITEM_ID])  # (B, d)
        if not self.finetuning:
            interests = self.extract_interests(item_seq, item_seq_len)
            return torch.einsum("bkd,bd->bk", interests, item_emb).max(dim=-1).values
        user, _, _ = self.forward(item_seq, item_seq_len)
        return (user * item_emb).sum(-1)

    def full_sort_predict(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        table = self.item_embedding.weight
        if not self.finetuning:  # stage 1: best inner product over the K interests
            interests = self.extract_interests(item_seq, item_seq_len)
            return torch.matmul(interests, table.t()).max(dim=1).values
        user, _, _ = self.forward(item_seq, item_seq_len)
        return user @ table.t()
