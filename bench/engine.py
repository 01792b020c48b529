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

import math
import random
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

    def take(self, idx: np.ndarray) -> "Instances":
        """The instances at positions ``idx`` (same flat item array)."""
        return Instances(self.items, self.start[idx], self.end[idx], self.user[idx])


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


def make_batch(inst: Instances, idx: np.ndarray, width: int | None = None, device=None) -> Interaction:
    """Right-padded (B, L) batch of instances ``idx`` on ``device``; L = longest history unless given."""
    start, end = inst.start[idx], inst.end[idx]
    lengths = end - start
    width = int(lengths.max()) if width is None else width
    cols = start[:, None] + np.arange(width)[None, :]
    real = cols < end[:, None]
    seq = np.where(real, inst.items[np.minimum(cols, len(inst.items) - 1)], 0)
    batch = Interaction({
        "item_id_list": torch.from_numpy(seq.astype(np.int64)),
        "item_length": torch.from_numpy(lengths.astype(np.int64)),
        "item_id": torch.from_numpy(inst.items[end].astype(np.int64)),
        "user_id": torch.from_numpy(inst.user[idx].astype(np.int64)),
    })
    return batch if device is None or torch.device(device).type == "cpu" else batch.to(device)


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
def rank_targets(model, inst: Instances, batch_size: int, width: int | None = None, device=None) -> np.ndarray:
    """(n,) 0-based rank of each instance's target among all items (padding excluded).

    The scores stay on ``device`` (the model's); only the ranks come back.

    Ties count against the target (rank = #items scoring >= it, minus itself), and a
    NaN score becomes -inf, so a degenerate model cannot earn hits by ties.
    """
    model.eval()
    order = np.argsort(inst.lengths, kind="stable")
    ranks = np.empty(len(inst), dtype=np.int32)
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        batch = make_batch(inst, idx, width, device)
        scores = model.full_sort_predict(batch).float()
        scores = torch.nan_to_num(scores, nan=-math.inf)
        scores[:, 0] = -math.inf
        target = scores.gather(1, batch["item_id"].unsqueeze(1))
        ranks[idx] = ((scores[:, 1:] >= target).sum(1) - 1).cpu().numpy()  # padding never counts
    return ranks


class NonFiniteLoss(BenchError):
    pass


class Interrupted(BaseException):
    """Raised by a ``progress`` hook to end a run as a kill would: nothing is recorded and the
    saved state is kept, so the next invocation resumes.  A ``BaseException``, so that the
    runner's failure handling (``except Exception``) does not turn it into a failed record."""


@dataclass
class FitResult:
    """What training produced; ranks are (n_users,) arrays aligned with the users."""

    valid_ranks: np.ndarray | None = None
    test_ranks: np.ndarray | None = None
    curve: list = field(default_factory=list)
    best_epoch: int = 0
    stage: int = 1                  # the training stage the reported checkpoint comes from
    stopped_by: str = ""            # 'patience' or 'epoch_cap' (then the run may not have converged)
    checkpoint_rule: str = "NDCG@10"
    test_ranks_by_metric: dict = field(default_factory=dict)
    best_epoch_by_metric: dict = field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    test_eval_s: float = 0.0
    n_batches: int = 0
    state_dict: dict | None = None


@dataclass
class _Progress:
    """Everything of a fit that changes from epoch to epoch besides model and optimizers.

    This (with the model, the optimizers and the RNG states) is what a saved run state
    holds, so a resumed fit continues exactly where the interrupted one stopped.
    """

    result: FitResult
    epoch: int = 0                  # the next epoch to run
    best: dict = field(default_factory=lambda: {m: -1.0 for m in METRICS})
    best_state: dict | None = None
    best_valid: np.ndarray | None = None
    bad_validations: int = 0


def make_optimizers(model, params) -> tuple[list, list]:
    """The model's own optimizers (``configure_optimizers``, models/CONTRACT.md) or one Adam;
    a StepLR on each when the params ask for one."""
    if hasattr(model, "configure_optimizers"):
        opts = list(model.configure_optimizers())
    else:
        opts = [torch.optim.Adam(model.parameters(), lr=params["learning_rate"],
                                 weight_decay=params.get("weight_decay") or 0.0)]
    scheds = []
    if params.get("lr_step_size"):
        scheds = [torch.optim.lr_scheduler.StepLR(o, params["lr_step_size"], params.get("lr_gamma", 0.1))
                  for o in opts]
    return opts, scheds


def _rng_states(rng: np.random.Generator, device: torch.device) -> dict:
    states = {"engine": rng.bit_generator.state, "torch": torch.get_rng_state(),
              "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict, rng: np.random.Generator) -> None:
    rng.bit_generator.state = states["engine"]
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states:
        torch.cuda.set_rng_state_all(states["cuda"])


def train_epoch(model, opts, train: Instances, batches: list, width=None, device=None,
                epoch: int = 0) -> tuple[float, int]:
    """One pass over ``batches`` (index arrays into ``train``); (mean loss, batches run)."""
    model.train()
    total, count = 0.0, 0
    for idx in batches:
        loss = model.calculate_loss(make_batch(train, idx, width, device))
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"loss is {loss.item()} at epoch {epoch}, batch {count}")
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()
        total += float(loss.detach())
        count += 1
    return total / max(count, 1), count


def fit(model, params: dict, train: Instances, valid: Instances, test: Instances,
        seed: int, protocol: str = "clean", progress=None, stop_valid: Instances | None = None,
        device="cpu", state=None) -> FitResult:
    """Train with early stopping on validation, then rank every validation and test target.

    The checkpoint rule is ``params["checkpoint_rule"]`` (see ``CHECKPOINT_RULES``):
      NDCG@10 (clean's default): one checkpoint, the best validation NDCG@10; patience
        ``stopping_step`` validations without a gain in it.
      any-metric (the paper protocol, bench/zoo.py PROTOCOL_DEFAULTS): the DiffuRec authors'
        rule as released (src/trainer.py model_train at f6f70c9): one checkpoint, the model at
        the *last* validation where any of the six metrics improved, each metric as the
        release computes it (the mean over consecutive batches of ``train_batch_size``
        users, in percent, rounded to 4 decimals); the test set is ranked once with it;
        patience ``stopping_step`` validations without a gain in any metric.
      per-metric (the paper protocol's default before the release was reproduced; kept so that
        its records can be re-run): each metric reported at its own best validation, the
        test set ranked at every validation where a metric improved.  More generous than
        the release, and not the authors' rule.
    ``validation_cadence``: 'suite' validates after epoch e (0-based) when (e + 1) is a multiple
      of ``eval_step`` and after the last epoch; 'release' when e > 0 is a multiple of
      ``eval_step`` and never at the end, as the release does (the first after 21 epochs).
    ``stop_valid``: the validation instances early stopping watches (default ``valid``);
      a fixed user subset makes a costly validation affordable.  The chosen checkpoint
      then ranks every user of ``valid`` and ``test``.
    Stages (models/CONTRACT.md): a model whose ``set_epoch(epoch)`` returns True, or whose
      ``advance_stage()`` returns True when patience runs out, starts a new stage from the
      best weights of the stage that ended, with fresh optimizers; patience and the best
      score restart, so the reported checkpoint is the best of the last stage.  No run
      stops before ``min_epochs``.
    ``state``: a ``bench.resume.RunState``; the fit saves itself there and, when it holds a
      state, continues from it, with the same result as an uninterrupted fit.
    ``progress(entry)`` is called after every epoch (after the state is saved); it may raise
      ``Interrupted``.
    """
    if protocol not in ("clean", "paper"):
        raise BenchError(f"unknown protocol '{protocol}' (known: clean, paper)")
    rule = checkpoint_rule(params, protocol)
    cadence = str(params.get("validation_cadence") or "suite")
    if cadence not in ("suite", "release"):
        raise BenchError(f"validation_cadence must be 'suite' or 'release', got {cadence!r}")
    device = torch.device(device)
    model.to(device)
    stop_valid = valid if stop_valid is None else stop_valid
    rng = np.random.default_rng(seed)
    width = params["MAX_ITEM_LIST_LENGTH"] if getattr(model, "fixed_length_input", False) else None
    batch_size, eval_bs = int(params["train_batch_size"]), int(params["eval_batch_size"])
    epochs, patience = int(params["epochs"]), int(params["stopping_step"])
    opts, scheds = make_optimizers(model, params)
    p = _Progress(FitResult(checkpoint_rule=rule))
    saved = state.load() if state is not None else None
    if saved is not None:
        p = _restore(saved, model, opts, scheds, rng)
    result = p.result
    while p.epoch < epochs and not result.stopped_by:
        epoch = p.epoch
        entry = {"epoch": epoch, "stage": result.stage}
        if hasattr(model, "set_epoch") and model.set_epoch(epoch):
            # the objective changed: as after advance_stage, the new stage starts from the best
            # weights of the last one, with fresh optimizers, and the checkpoint choice restarts
            if p.best_state is not None:
                model.load_state_dict(p.best_state)
            _new_stage(p)
            opts, scheds = make_optimizers(model, params)
            entry["stage"] = result.stage
        t0 = time.perf_counter()
        batches = epoch_batches(train.lengths, batch_size, rng, params.get("length_bucketing", True))
        loss, count = train_epoch(model, opts, train, batches, width, device, epoch)
        for sched in scheds:
            sched.step()
        entry.update(train_loss=loss, train_s=time.perf_counter() - t0, valid=None)
        result.train_s += entry["train_s"]
        result.n_batches += count
        if validates_after(epoch, int(params["eval_step"]), epochs, cadence):
            entry["valid"] = _validate(model, p, epoch, stop_valid, test, eval_bs, width, device, rule,
                                       batch_size)
        result.curve.append(entry)
        p.epoch = epoch + 1
        patient = p.epoch < int(params.get("min_epochs") or 0)
        if entry["valid"] is not None and p.bad_validations >= patience and not patient:
            if not _advance_stage(model, p):
                result.stopped_by = "patience"
                _save(state, model, opts, scheds, p, rng, device, force=True)
                if progress is not None:
                    progress(entry)
                break
            opts, scheds = make_optimizers(model, params)
            entry["stage_after"] = result.stage
        _save(state, model, opts, scheds, p, rng, device)
        if progress is not None:
            progress(entry)
    if not result.stopped_by:
        result.stopped_by = "epoch_cap"
    if p.best_state is not None:
        model.load_state_dict(p.best_state)
    else:  # the last stage never validated: its final weights are the checkpoint
        result.best_epoch = p.epoch - 1
    t3 = time.perf_counter()
    if p.best_valid is not None and stop_valid is valid:
        result.valid_ranks = p.best_valid
    else:
        result.valid_ranks = rank_targets(model, valid, eval_bs, width, device)
    if rule == "per-metric" and "NDCG@10" in result.test_ranks_by_metric:
        result.test_ranks = result.test_ranks_by_metric["NDCG@10"]  # ranked at that checkpoint
    else:
        result.test_ranks = rank_targets(model, test, eval_bs, width, device)
    result.test_eval_s += time.perf_counter() - t3
    result.state_dict = p.best_state
    return result


def _restore(saved: dict, model, opts, scheds, rng) -> _Progress:
    """Put a saved state back into the model, optimizers, schedulers and RNGs; returns its progress."""
    model.load_state_dict(saved["model"])
    for opt, s in zip(opts, saved["optimizers"]):
        opt.load_state_dict(s)
    for sched, s in zip(scheds, saved["schedulers"]):
        sched.load_state_dict(s)
    _set_rng_states(saved["rng"], rng)
    return saved["progress"]


CHECKPOINT_RULES = ("NDCG@10", "any-metric", "per-metric")


def checkpoint_rule(params: dict, protocol: str) -> str:
    """The fit's checkpoint rule: ``params["checkpoint_rule"]``, else the protocol's old default
    (clean: NDCG@10; paper: per-metric, which is what records made before the key existed used)."""
    rule = params.get("checkpoint_rule") or ("NDCG@10" if protocol == "clean" else "per-metric")
    if rule not in CHECKPOINT_RULES:
        raise BenchError(f"checkpoint_rule must be one of {CHECKPOINT_RULES}, got {rule!r}")
    return rule


def validates_after(epoch: int, eval_step: int, epochs: int, cadence: str = "suite") -> bool:
    """Whether the fit validates after 0-based ``epoch`` (see ``fit``'s docstring)."""
    if cadence == "release":
        return epoch != 0 and epoch % eval_step == 0
    return (epoch + 1) % eval_step == 0 or epoch + 1 == epochs


def release_scores(ranks: np.ndarray, batch_size: int) -> dict:
    """The six metrics as the authors' release computes them for its checkpoint choice.

    ranks: (n,) 0-based ranks in user order.  Their validation loader yields batches of
    ``batch_size`` users in user order, unshuffled; each metric is the mean over batches of
    the batch means, in percent, rounded to 4 decimals (so the last, smaller batch weighs more).
    """
    chunks = [ranks[i : i + batch_size] for i in range(0, len(ranks), batch_size)]
    per_batch = [metrics_from_ranks(c) for c in chunks]
    return {m: round(float(np.mean([b[m] for b in per_batch])) * 100, 4) for m in METRICS}


def _validate(model, p: _Progress, epoch: int, stop_valid: Instances, test: Instances, eval_bs: int,
              width, device, rule: str, batch_size: int) -> dict:
    """Rank the stopping users' validation targets and keep what improved; returns the scores.

    NDCG@10: only NDCG@10 counts, and its best epoch's weights are kept.  any-metric: any
    improved metric (``release_scores``) resets patience and this epoch's weights become the
    checkpoint.  per-metric: any improved metric resets patience and ranks the test set with
    this checkpoint for that metric.
    """
    result = p.result
    t1 = time.perf_counter()
    ranks = rank_targets(model, stop_valid, eval_bs, width, device)
    result.eval_s += time.perf_counter() - t1
    scores = metrics_from_ranks(ranks)
    judged = release_scores(ranks, batch_size) if rule == "any-metric" else scores
    improved = [m for m in METRICS if judged[m] > p.best[m]]
    watched = ["NDCG@10"] if rule == "NDCG@10" else list(METRICS)
    if not any(m in improved for m in watched):
        p.bad_validations += 1
        return scores
    p.bad_validations = 0
    if rule == "per-metric":
        t2 = time.perf_counter()
        test_ranks = rank_targets(model, test, eval_bs, width, device)
        result.test_eval_s += time.perf_counter() - t2
        for m in improved:
            result.test_ranks_by_metric[m] = test_ranks
    for m in watched:
        if m in improved:
            p.best[m] = judged[m]
            if rule != "NDCG@10":
                result.best_epoch_by_metric[m] = epoch
    if "NDCG@10" in improved or rule == "any-metric":
        p.best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        p.best_valid, result.best_epoch = ranks, epoch
    return scores


def _new_stage(p: _Progress) -> None:
    p.result.stage += 1
    p.best = {m: -1.0 for m in METRICS}
    p.best_state, p.best_valid, p.bad_validations = None, None, 0
    p.result.test_ranks_by_metric, p.result.best_epoch_by_metric = {}, {}


def _advance_stage(model, p: _Progress) -> bool:
    """Patience ran out: move the model to its next stage if it has one (models/CONTRACT.md)."""
    if not hasattr(model, "advance_stage"):
        return False
    if p.best_state is not None:
        model.load_state_dict(p.best_state)  # the next stage starts from this stage's best
    if not model.advance_stage():
        return False
    _new_stage(p)
    return True


def _save(state, model, opts, scheds, p: _Progress, rng, device, force=False) -> None:
    """Hand the fit's state to ``state`` (it decides whether this epoch is saved)."""
    if state is None:
        return
    state.maybe_save(lambda: {
        "model": model.state_dict(), "optimizers": [o.state_dict() for o in opts],
        "schedulers": [s.state_dict() for s in scheds], "progress": p, "rng": _rng_states(rng, device),
    }, p.result, force=force)
