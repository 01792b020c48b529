"""Caser: Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
Sequence Embedding", WSDM 2018.

RecBole's implementation: the last L item embeddings form an L x d "image";
horizontal filters of every height 1..L (max-pooled) and vertical filters
(Sec. 3.1-3.2), concatenated with a user embedding, feed a dense layer whose output
is scored against every item (Eq. 9).  Its vertical filter spans exactly L rows, so
its input always has width L: this model cannot use trimmed batches
(``fixed_length_input``).  L = 5 as in the Caser paper (``MAX_ITEM_LIST_LENGTH``).

``loss_type: CE`` (the default here) is the full softmax, as every model gets.  The
Caser paper trains with binary cross-entropy against sampled negatives (Eq. 13);
``loss_type: BPR`` is RecBole's sampled alternative, unchanged, with one uniform
negative per target (``models/negatives.py``), used to measure how much of the gap to
the paper's Caser the loss explains (``reports/full/diagnosis.md``).
"""
from recbole.model.sequential_recommender.caser import Caser as _RecBoleCaser

from models.negatives import uniform_negatives


class Caser(_RecBoleCaser):
    """RecBole's Caser (forward, losses, predict, full_sort_predict inherited)."""

    fixed_length_input = True  # conv kernels are sized by MAX_ITEM_LIST_LENGTH

    def calculate_loss(self, interaction):
        if self.loss_type == "BPR":  # RecBole's BPR reads a negative the harness does not sample
            interaction[self.NEG_ITEM_ID] = uniform_negatives(interaction[self.POS_ITEM_ID], self.n_items)
        return super().calculate_loss(interaction)
