"""Uniform negative items, for the sampled objectives that some baselines' own papers train with.

Not a model (it has no YAML, so the zoo does not list it).  The harness trains every model with
the full softmax; a model whose reference trains with sampled negatives can switch to that objective
(``loss_type: BCE`` or ``BPR``) and draw its negatives here, so that ``reports/full/diagnosis.md``
can measure what the choice of loss does to it.
"""
import torch


def uniform_negatives(pos: torch.Tensor, n_items: int) -> torch.Tensor:
    """One negative item per target, uniform over the catalogue ids 1..n_items-1 (0 is padding).

    pos: (B,) target ids -> (B,) ids drawn with torch's global RNG (seeded by the harness), so a
    run stays reproducible.  Like RecBole's default sampler for sequential models, a draw may hit
    the target or an item from the user's history: at these catalogue sizes (>10k items) that is rare.
    """
    return torch.randint(1, n_items, pos.shape, device=pos.device)
