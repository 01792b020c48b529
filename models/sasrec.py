"""SASRec: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

RecBole's implementation: item + learned position embeddings, causal multi-head
self-attention blocks (Sec. III-B/C of the paper), the output at the last real position
scored against every item embedding (Eq. 6, shared embeddings).  With ``loss_type: CE``
(the default here) the loss is the full softmax over the catalogue, as in DiffuRec; that
and ``BPR`` are RecBole's, unchanged.

``loss_type: BCE`` is the SASRec paper's own objective (Sec. III-E): binary cross-entropy
of the target against one negative item drawn uniformly from the catalogue (torch's
global RNG; the paper excludes the user's history, not reproduced).  The paper applies
it at every position of a user's sequence once per epoch; the harness feeds every
prefix, so it is applied at the last position of each prefix, and each transition still
counts once per epoch.  The suite uses it to show how much of the gap to the paper's
SASRec numbers the loss explains (``reports/full/diagnosis.md``).

Padding: RecBole right-pads sequences and masks padded *keys*; outputs at real
positions do not depend on how much padding follows, so the harness may trim a batch
to its longest sequence without changing any score (tests/test_engine.py checks it).
"""
import torch
import torch.nn.functional as F
from recbole.model.sequential_recommender.sasrec import SASRec as _RecBoleSASRec

from models.negatives import uniform_negatives


class SASRec(_RecBoleSASRec):
    """RecBole's SASRec (predict, full_sort_predict inherited), plus the paper's BCE loss."""

    def __init__(self, config, dataset):
        bce = config["loss_type"] == "BCE"
        if bce:  # RecBole's constructor accepts only BPR and CE
            config["loss_type"] = "CE"
        super().__init__(config, dataset)
        if bce:
            config["loss_type"] = self.loss_type = "BCE"

    def calculate_loss(self, interaction):
        if self.loss_type != "BCE":
            return super().calculate_loss(interaction)
        out = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])  # (B, H)
        pos = interaction[self.POS_ITEM_ID]
        neg = uniform_negatives(pos, self.n_items)
        pos_logit = (out * self.item_embedding(pos)).sum(-1)
        neg_logit = (out * self.item_embedding(neg)).sum(-1)
        return (F.binary_cross_entropy_with_logits(pos_logit, torch.ones_like(pos_logit))
                + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit)))
