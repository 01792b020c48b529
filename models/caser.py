"""Caser: Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
Sequence Embedding", WSDM 2018.

RecBole's implementation, unchanged: the last L item embeddings form an L x d
"image"; horizontal filters of every height 1..L (max-pooled) and vertical filters
(Sec. 3.1-3.2), concatenated with a user embedding, feed a dense layer whose output
is scored against every item (Eq. 9).  Its vertical filter spans exactly L rows, so
its input always has width L: this model cannot use trimmed batches
(``fixed_length_input``).  L = 5 as in the Caser paper (``MAX_ITEM_LIST_LENGTH``).
"""
from recbole.model.sequential_recommender.caser import Caser as _RecBoleCaser


class Caser(_RecBoleCaser):
    """RecBole's Caser (calculate_loss, predict, full_sort_predict inherited)."""

    fixed_length_input = True  # conv kernels are sized by MAX_ITEM_LIST_LENGTH
