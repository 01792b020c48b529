"""GRU4Rec: Hidasi et al., "Session-based Recommendations with Recurrent Neural
Networks", ICLR 2016.

RecBole's implementation, unchanged: item embedding -> dropout -> GRU -> dense layer;
the hidden state at the last real position is scored against every item embedding.
Trailing padding never reaches that state, so trimming a batch changes nothing.
"""
from recbole.model.sequential_recommender.gru4rec import GRU4Rec as _RecBoleGRU4Rec


class GRU4Rec(_RecBoleGRU4Rec):
    """RecBole's GRU4Rec (calculate_loss, predict, full_sort_predict inherited)."""
