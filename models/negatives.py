"""Uniform negative items and the sampled objectives that some baselines' own references train with.

Not a model (it has no YAML, so the zoo does not list it).  The harness trains every model with
the full softmax; a model whose reference trains with sampled negatives can switch to that objective
(``loss_type: BCE``, ``BPR`` or ``SSM``) with the negatives and losses here, so that ``reports/full/diagnosis.md``
can measure what the choice of loss does to it.
"""
import torch
import torch.nn.functional as F


def uniform_negatives(pos: torch.Tensor, n_items: int) -> torch.Tensor:
    """One negative item per target, uniform over the catalogue ids 1..n_items-1 (0 is padding).

    pos: (B,) target ids -> (B,) ids drawn with torch's global RNG (seeded by the harness), so a
    run stays reproducible.  Like RecBole's default sampler for sequential models, a draw may hit
    the target or an item from the user's history: at these catalogue sizes (>10k items) that is rare.
    """
    return torch.randint(1, n_items, pos.shape, device=pos.device)


def bpr_loss(user: torch.Tensor, table: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BPR against one uniform negative per target: mean of -log sigmoid(u.e_target - u.e_neg).

    user: (B, d) user vectors, table: (n_items, d) item embeddings, target: (B,) ids -> scalar.
    """
    neg = uniform_negatives(target, table.size(0))
    return -F.logsigmoid((user * (table[target] - table[neg])).sum(-1)).mean()


def sampled_softmax_loss(user: torch.Tensor, table: torch.Tensor, target: torch.Tensor, n_neg: int) -> torch.Tensor:
    """Softmax over each target and ``n_neg`` uniform negatives shared by the batch.

    user: (B, d), table: (n_items, d), target: (B,) -> scalar.  A negative equal to a row's
    target is masked out of that row (TF's ``remove_accidental_hits``).  With uniform proposals
    the log-Q correction of a sampled softmax is the same for every candidate, so none is needed.
    """
    neg = torch.randint(1, table.size(0), (n_neg,), device=target.device)
    pos = (user * table[target]).sum(-1, keepdim=True)  # (B, 1)
    negs = (user @ table[neg].t()).masked_fill(neg.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
    return F.cross_entropy(torch.cat([pos, negs], dim=1), torch.zeros_like(target))
