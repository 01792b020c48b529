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
"""
import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.bert4rec import BERT4Rec as _RecBoleBERT4Rec


class BERT4Rec(_RecBoleBERT4Rec):
    """RecBole's BERT4Rec with in-model cloze masking (predict/full_sort_predict inherited)."""

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

    def calculate_loss(self, interaction):
        if self.MASK_ITEM_SEQ is not None and self.MASK_ITEM_SEQ in interaction:
            return super().calculate_loss(interaction)
        item_seq = interaction[self.ITEM_SEQ]
        masked_seq, in_loss = self._cloze(item_seq)
        if self.loss_type != "CE":
            raise NotImplementedError("this suite trains BERT4Rec with loss_type CE")
        hidden = self.forward(masked_seq)[in_loss]  # [n_masked H]
        if hidden.shape[0] == 0:
            return self.output_bias.sum() * 0.0  # no masked item in this batch
        logits = hidden @ self.item_embedding.weight[: self.n_items].T + self.output_bias
        return F.cross_entropy(logits, item_seq[in_loss])
