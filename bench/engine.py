"""Training and full-catalogue evaluation on prepared sequences (the fast path).

RecBole's trainer pads every batch to ``MAX_ITEM_LIST_LENGTH`` and builds batches
through its generic ``Interaction`` machinery; Beauty's histories average 8.9 items
against a width of 50.  Here a batch is gathered straight from the flat item array
and trimmed to its longest history.  Sequences are right-padded (RecBole's layout),
so trimming only drops trailing padding, which every model masks: the loss and the
scores of each instance are unchanged (tests/test_engine.py).  With
``length_bucketing`` the shuffled instances are sorted by length inside windows of
``bucket_window`` batches, so batches hold similar lengths; every instance is still
seen once per epoch, in a seeded random order.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from recbole.data.interaction import Interaction

from bench.errors import BenchError
from bench.store import METRICS, metrics_from_ranks
from datasets.prepare import Sequences


@dataclass
class Instances:
    """Histories as slices of a flat item array: ``items[start:end]`` -> ``items[end]``.

    start, end: (n,) int64 offsets into ``items``; user: (n,) int64 1-based user id.
    """

    items: np.ndarray
    start: np.ndarray
    end: np.ndarray
    user: np.ndarray

    def __len__(self) -> int:
        return len(self.start)

    @property
    def lengths(self) -> np.ndarray:
        return self.end - self.start

    @property
    def targets(self) -> np.ndarray:
        return self.items[self.end]


def training_instances(seqs: Sequences, max_len: int, max_prefixes: int | None = None) -> Instances:
    """Every prefix of every training part (RecBole's augmentation).

    For a user with n items the training part is items 0..n-3; targets are
    positions 1..n-3, each with the up-to-``max_len`` items before it.
    ``max_prefixes`` keeps only each user's most recent targets (budget profiles).
    """
    n = seqs.lengths
    n_targets = np.maximum(n - 3, 0)
    if max_prefixes is not None:
        n_targets = np.minimum(n_targets, max_prefixes)
    owner = np.repeat(np.arange(seqs.n_users), n_targets)
    # position of the k-th kept target counted back from the last training item
    back = np.arange(n_targets.sum()) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets)
    last_train = seqs.offsets[1:] - 3
    end = np.repeat(last_train, n_targets) - back
    start = np.maximum(end - max_len, seqs.offsets[:-1][owner])
    return Instances(seqs.items, start, end, owner + 1)


def evaluation_instances(seqs: Sequences, max_len: int, split: str) -> Instances:
    """One instance per user: target = second-to-last ('valid') or last ('test') item."""
    shift = {"valid": 2, "test": 1}[split]
    end = seqs.offsets[1:] - shift
    start = np.maximum(end - max_len, seqs.offsets[:-1])
    return Instances(seqs.items, start, end, np.arange(seqs.n_users) + 1)


def make_batch(inst: Instances, idx: np.ndarray, width: int | None = None) -> Interaction:
    """Right-padded (B, L) batch of instances ``idx``; L = longest history unless given."""
    start, end = inst.start[idx], inst.end[idx]
    lengths = end - start
    width = int(lengths.max()) if width is None else width
    cols = start[:, None] + np.arange(width)[None, :]
    real = cols < end[:, None]
    seq = np.where(real, inst.items[np.minimum(cols, len(inst.items) - 1)], 0)
    return Interaction({
        "item_id_list": torch.from_numpy(seq.astype(np.int64)),
        "item_length": torch.from_numpy(lengths.astype(np.int64)),
        "item_id": torch.from_numpy(inst.items[end].astype(np.int64)),
        "user_id": torch.from_numpy(inst.user[idx].astype(np.int64)),
    })


def epoch_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator,
                  bucketing: bool = True, bucket_window: int = 50) -> list[np.ndarray]:
    """A seeded random partition of all instances into batches (see module doc)."""
    order = rng.permutation(len(lengths))
    if bucketing:
        window = batch_size * bucket_window
        chunks = [order[i : i + window] for i in range(0, len(order), window)]
        order = np.concatenate([c[np.argsort(lengths[c], kind="stable")] for c in chunks])
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


@torch.no_grad()
def rank_targets(model, inst: Instances, batch_size: int, width: int | None = None) -> np.ndarray:
    """(n,) 0-based rank of each instance's target among all items (padding excluded).

    Ties count against the target (rank = #items scoring >= it, minus itself), and a
    NaN score becomes -inf, so a degenerate model cannot earn hits by ties.
    """
    model.eval()
    order = np.argsort(inst.lengths, kind="stable")
    ranks = np.empty(len(inst), dtype=np.int32)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        batch = make_batch(inst, idx, width)
        scores = model.full_sort_predict(batch).float()
        scores = torch.nan_to_num(scores, nan=-math.inf)
        scores[:, 0] = -math.inf
        target = scores.gather(1, batch["item_id"].unsqueeze(1))
        ranks[idx] = ((scores[:, 1:] >= target).sum(1) - 1).numpy()  # padding never counts
    return ranks


class NonFiniteLoss(BenchError):
    pass


@dataclass
class FitResult:
    """What training produced; ranks are (n_users,) arrays aligned with the users."""

    valid_ranks: np.ndarray
    test_ranks: np.ndarray
    curve: list = field(default_factory=list)
    best_epoch: int = 0
    checkpoint_rule: str = "NDCG@10"
    test_ranks_by_metric: dict = field(default_factory=dict)
    best_epoch_by_metric: dict = field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    test_eval_s: float = 0.0
    n_batches: int = 0
    state_dict: dict | None = None


def _optimizer(model, params):
    opt = torch.optim.Adam(model.parameters(), lr=params["learning_rate"],
                           weight_decay=params.get("weight_decay") or 0.0)
    sched = None
    if params.get("lr_step_size"):
        sched = torch.optim.lr_scheduler.StepLR(opt, params["lr_step_size"], params.get("lr_gamma", 0.1))
    return opt, sched


def fit(model, params: dict, train: Instances, valid: Instances, test: Instances,
        seed: int, protocol: str = "clean", progress=None) -> FitResult:
    """Train with early stopping on validation, then rank every test target.

    clean: one checkpoint, the best validation NDCG@10; patience ``stopping_step``
      validations.
    A model whose ``set_epoch(epoch)`` returns True (its objective changed, e.g. a
    second training stage) gets its patience reset; no run stops before
    ``min_epochs``.
    paper: the DiffuRec authors' rule: whenever *any* validation metric improves the
      test set is ranked with that checkpoint; each metric is reported at its own best
      validation epoch; stop after ``stopping_step`` validations without any gain.
    """
    if protocol not in ("clean", "paper"):
        raise BenchError(f"unknown protocol '{protocol}' (known: clean, paper)")
    rng = np.random.default_rng(seed)
    width = params["MAX_ITEM_LIST_LENGTH"] if getattr(model, "fixed_length_input", False) else None
    batch_size, eval_bs = int(params["train_batch_size"]), int(params["eval_batch_size"])
    opt, sched = _optimizer(model, params)
    result = FitResult(valid_ranks=None, test_ranks=None,
                       checkpoint_rule="NDCG@10" if protocol == "clean" else "per-metric")
    best = {m: -1.0 for m in METRICS}
    best_state, best_valid, bad_validations = None, None, 0
    train_lengths = train.lengths
    for epoch in range(int(params["epochs"])):
        if hasattr(model, "set_epoch") and model.set_epoch(epoch):
            bad_validations = 0  # the objective changed (a new stage): patience starts afresh
        model.train()
        t0, total, count = time.perf_counter(), 0.0, 0
        batches = epoch_batches(train_lengths, batch_size, rng, params.get("length_bucketing", True))
        for idx in batches:
            loss = model.calculate_loss(make_batch(train, idx, width))
            if not torch.isfinite(loss):
                raise NonFiniteLoss(f"loss is {loss.item()} at epoch {epoch}, batch {count}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach())
            count += 1
        if sched is not None:
            sched.step()
        result.train_s += time.perf_counter() - t0
        result.n_batches += count
        entry = {"epoch": epoch, "train_loss": total / max(count, 1),
                 "train_s": time.perf_counter() - t0, "valid": None}
        last = epoch + 1 == int(params["epochs"])
        if (epoch + 1) % int(params["eval_step"]) == 0 or last:
            t1 = time.perf_counter()
            ranks = rank_targets(model, valid, eval_bs, width)
            result.eval_s += time.perf_counter() - t1
            scores = metrics_from_ranks(ranks)
            entry["valid"] = scores
            improved = [m for m in METRICS if scores[m] > best[m]]
            watched = ["NDCG@10"] if protocol == "clean" else METRICS
            if any(m in improved for m in watched):
                bad_validations = 0
                if protocol == "clean":
                    best["NDCG@10"] = scores["NDCG@10"]
                    best_state = copy.deepcopy(model.state_dict())
                    best_valid, result.best_epoch = ranks, epoch
                else:
                    t2 = time.perf_counter()
                    test_ranks = rank_targets(model, test, eval_bs, width)
                    result.test_eval_s += time.perf_counter() - t2
                    for m in improved:
                        best[m] = scores[m]
                        result.test_ranks_by_metric[m] = test_ranks
                        result.best_epoch_by_metric[m] = epoch
                    if "NDCG@10" in improved:
                        best_state = copy.deepcopy(model.state_dict())
                        best_valid, result.best_epoch = ranks, epoch
            else:
                bad_validations += 1
        result.curve.append(entry)
        if progress is not None:
            progress(entry)
        patient = epoch + 1 < int(params.get("min_epochs") or 0)
        if entry["valid"] is not None and bad_validations >= int(params["stopping_step"]) and not patient:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    t3 = time.perf_counter()
    result.valid_ranks = best_valid if best_valid is not None else rank_targets(model, valid, eval_bs, width)
    if protocol == "paper" and "NDCG@10" in result.test_ranks_by_metric:
        result.test_ranks = result.test_ranks_by_metric["NDCG@10"]  # ranked at that checkpoint
    else:
        result.test_ranks = rank_targets(model, test, eval_bs, width)
    result.test_eval_s += time.perf_counter() - t3
    result.state_dict = best_state
    return result
