"""Small synthetic datasets with a learnable next-item rule, for tests.

``next_item_rule``: each user starts at a random item and walks the catalogue with
a fixed successor map (item i -> succ[i]), except that with probability ``noise`` a
step jumps to a random item.  A model that learns the map predicts the validation
and test items almost perfectly; a popularity ranking cannot (items are used evenly).
"""
from __future__ import annotations

import numpy as np

from datasets.prepare import Sequences


def next_item_rule(
    n_users: int = 300, n_items: int = 50, min_len: int = 5, max_len: int = 12,
    noise: float = 0.0, seed: int = 0,
) -> Sequences:
    """Sequences whose next item follows a hidden permutation of the catalogue."""
    rng = np.random.default_rng(seed)
    successor = rng.permutation(n_items) + 1  # successor[i - 1] follows item i
    seqs = []
    for _ in range(n_users):
        length = int(rng.integers(min_len, max_len + 1))
        seq = [int(rng.integers(1, n_items + 1))]
        for _ in range(length - 1):
            jump = rng.random() < noise
            seq.append(int(rng.integers(1, n_items + 1)) if jump else int(successor[seq[-1] - 1]))
        seqs.append(seq)
    offsets = np.zeros(n_users + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(s) for s in seqs])
    items = np.array([i for s in seqs for i in s], dtype=np.int32)
    return Sequences("synthetic", items, offsets, n_items + 1, "synthetic", np.arange(n_users))
