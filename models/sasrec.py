"""SASRec: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

RecBole's implementation, unchanged: item + learned position embeddings, causal
multi-head self-attention blocks (Sec. III-B/C of the paper), the output at the last
real position scored against every item embedding (Eq. 6, shared embeddings).  With
``loss_type: CE`` the loss is the full softmax over the catalogue, as in DiffuRec.

Padding: RecBole right-pads sequences and masks padded *keys*; outputs at real
positions do not depend on how much padding follows, so the harness may trim a batch
to its longest sequence without changing any score (tests/test_engine.py checks it).
"""
from recbole.model.sequential_recommender.sasrec import SASRec as _RecBoleSASRec


class SASRec(_RecBoleSASRec):
    """RecBole's SASRec (calculate_loss, predict, full_sort_predict inherited)."""
