"""BERT4Rec: Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer", CIKM 2019.

RecBole's network, unchanged: bidirectional Transformer over item + position
embeddings, cloze objective (Sec. 3.6: each history item is replaced by [mask] with
probability ``mask_ratio`` and predicted with a softmax over all items), and at test
time a [mask] appended after the history whose output ranks the catalogue.

One change of *where*, not *what*: RecBole draws the cloze masks in a Python loop in
its data loader (``transform: mask_itemseq``), which costs more than the network
itself on a CPU.  ``calculate_loss`` draws the same masks with torch when the batch
carries none: every real position masked with probability ``mask_ratio``, at most
the last ``int(mask_ratio * MAX_ITEM_LIST_LENGTH)`` masks of a row kept, a mask at
position 0 fed to the network but left out of the loss (as RecBole does).  Batches
from RecBole's own loader (masks already drawn) go to RecBole's code unchanged.

``faithful_cloze: true`` (the YAML's default; ``false`` is RecBole 1.2.1's behaviour, kept as
the ``BERT4Rec-recbole`` diagnosis variant of ``bench/profiles/full.yaml``) mends two things
RecBole 1.2.1 does with a harness of prefix instances, both of which the BERT4Rec paper
does not do:

- training: RecBole masks only the history ``item_id_list`` of each prefix, so a user's last
  training item (the target of the longest prefix, never part of a history) is never
  masked and never predicted.  With the switch the prefix's target joins its cloze sequence
  (h[0..n], the oldest item dropped only when the window is full), so every training item
  can be a cloze target, and masking the last position is the paper's "mask only the last
  item" sample (Sec. 3.6), the task the model is tested on;
- test: RecBole's ``reconstruct_test_data`` appends [mask] and then drops the first column,
  which removes the oldest history item of *every* row, not only of rows at the full
  window.  With the switch [mask] follows the whole history, and the oldest item is
  dropped only when the window is full.
"""
import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.bert4rec import BERT4Rec as _RecBoleBERT4Rec


class BERT4Rec(_RecBoleBERT4Rec):
    """RecBole's BERT4Rec with in-model cloze masking (predict/full_sort_predict RecBole's unless
    ``faithful_cloze``)."""

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.faithful_cloze = bool(config["faithful_cloze"])

    def _cloze(self, item_seq):
        """(B, L) ids -> masked ids, (B, L) bool positions that enter the loss."""
        real = item_seq > 0
        # draw for the full width, then cut: the masks do not depend on batch trimming
        draws = torch.rand(item_seq.shape[0], self.max_seq_length, device=item_seq.device)
        masked = (draws[:, : item_seq.shape[1]] < self.mask_ratio) & real
        masks_at_or_after = masked.flip(1).long().cumsum(1).flip(1)
        masked &= masks_at_or_after <= self.mask_item_length
        in_loss = masked.clone()
        in_loss[:, 0] = False
        return item_seq.masked_fill(masked, self.mask_token), in_loss

    def _append(self, item_seq, item_seq_len, last):
        """(B, W) right-padded ids, (B,) lengths, (B,) ids or a scalar -> (B, W') ids with ``last`` right
        after each history, and its (B,) position.  W' = W + 1 while the position table allows; a row
        already at ``max_seq_length`` drops its oldest item to make room."""
        if item_seq.size(1) < self.max_seq_length:
            item_seq = F.pad(item_seq, (0, 1))
        seq = item_seq.clone()
        full = item_seq_len >= seq.size(1)
        seq[full] = torch.roll(seq[full], -1, dims=1)
        pos = torch.where(full, seq.size(1) - 1, item_seq_len)
        seq[torch.arange(seq.size(0), device=seq.device), pos] = last
        return seq, pos

    def _mask_output(self, interaction):
        """(B, H) output at a [mask] appended after the whole history (``faithful_cloze``)."""
        seq, pos = self._append(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN], self.mask_token)
        return self.forward(seq)[torch.arange(seq.size(0), device=seq.device), pos]

    def predict(self, interaction):
        if not self.faithful_cloze:
            return super().predict(interaction)
        item = interaction[self.ITEM_ID]
        return (self._mask_output(interaction) * self.item_embedding(item)).sum(-1) + self.output_bias[item]

    def full_sort_predict(self, interaction):
        if not self.faithful_cloze:
            return super().full_sort_predict(interaction)
        return self._mask_output(interaction) @ self.item_embedding.weight[: self.n_items].T + self.output_bias

    def calculate_loss(self, interaction):
        if self.MASK_ITEM_SEQ is not None and self.MASK_ITEM_SEQ in interaction:
            return super().calculate_loss(interaction)
        item_seq = interaction[self.ITEM_SEQ]
        if self.faithful_cloze:  # the prefix's target joins its cloze sequence
            item_seq, _ = self._append(item_seq, interaction[self.ITEM_SEQ_LEN], interaction[self.POS_ITEM_ID])
        masked_seq, in_loss = self._cloze(item_seq)
        if self.loss_type != "CE":
            raise NotImplementedError("this suite trains BERT4Rec with loss_type CE")
        hidden = self.forward(masked_seq)[in_loss]  # [n_masked H]
        if hidden.shape[0] == 0:
            return self.output_bias.sum() * 0.0  # no masked item in this batch
        logits = hidden @ self.item_embedding.weight[: self.n_items].T + self.output_bias
        return F.cross_entropy(logits, item_seq[in_loss])
