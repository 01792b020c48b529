"""GRU4Rec: Hidasi et al., "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016.

RecBole's implementation: item embedding -> dropout -> GRU -> dense layer; the hidden
state at the last real position is scored against every item embedding.  Trailing
padding never reaches that state, so trimming a batch changes nothing.

``loss_type: CE`` (the default here) is the full softmax, as every model gets.  The
GRU4Rec paper trains with pairwise ranking losses over sampled negatives (Sec. 3.1.2,
BPR and TOP1); ``loss_type: BPR`` is RecBole's BPR loss, unchanged, with one uniform
negative per target (``models/negatives.py``) in place of the paper's in-batch negatives.
The suite uses it to measure how much of the gap to the paper's GRU4Rec the loss
explains (``reports/full/diagnosis.md``).
"""
from recbole.model.sequential_recommender.gru4rec import GRU4Rec as _RecBoleGRU4Rec

from models.negatives import uniform_negatives


class GRU4Rec(_RecBoleGRU4Rec):
    """RecBole's GRU4Rec (forward, losses, predict, full_sort_predict inherited)."""

    def calculate_loss(self, interaction):
        if self.loss_type == "BPR":  # RecBole's BPR reads a negative the harness does not sample
            interaction[self.NEG_ITEM_ID] = uniform_negatives(interaction[self.POS_ITEM_ID], self.n_items)
        return super().calculate_loss(interaction)
