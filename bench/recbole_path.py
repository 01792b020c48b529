"""The same data and models through RecBole's own pipeline (Dataset, DataLoader, Trainer).

Used by the tests (RecBole's leave-one-out split equals the authors' split; every
model also trains through RecBole's ``Trainer``) and by the speed benchmark
(``bench/speed.py``), never by the grid.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path

from recbole.data import create_dataset, data_preparation
from recbole.trainer import Trainer
from recbole.utils import init_seed

from bench.zoo import recbole_config
from datasets.prepare import Sequences, write_atomic

EVAL_ARGS = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"}


@contextlib.contextmanager
def _inside(folder: Path):
    """RecBole drops log_tensorboard/ and saved/ into the working directory."""
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def recbole_data(model_cls, params: dict, seqs: Sequences, workdir: Path, dataset_name="bench_data"):
    """(config, dataset, train, valid, test) built by RecBole from atomic files of ``seqs``."""
    data_path = write_atomic(seqs, Path(workdir) / "atomic", dataset_name)
    config_dict = {
        **params, "data_path": str(data_path), "eval_args": EVAL_ARGS,
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "metrics": ["Hit", "NDCG"], "topk": [5, 10, 20], "valid_metric": "NDCG@10",
        "checkpoint_dir": str(Path(workdir) / "saved"), "save_dataset": False, "save_dataloaders": False,
        "show_progress": False, "seed": params.get("seed", 0), "reproducibility": True,
    }
    config = recbole_config(model_cls, config_dict, dataset_name)
    init_seed(config["seed"], config["reproducibility"])
    with _inside(Path(workdir)):
        dataset = create_dataset(config)
        train, valid, test = data_preparation(config, dataset)
    return config, dataset, train, valid, test


def run_recbole_trainer(model_cls, params: dict, seqs: Sequences, epochs: int = 1, workdir=None,
                        max_batches: int | None = None) -> dict:
    """Train ``model_cls`` with RecBole's ``Trainer`` and evaluate with its evaluator.

    Returns {"model", "trainer", "valid", "test" (RecBole's metric dicts),
    "epoch_s" (list of seconds per training epoch), "loss" (per epoch)}.
    ``max_batches`` cuts every epoch short (for fast tests).
    """
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-recbole-"))
        workdir = Path(workdir)
        config, dataset, train, valid, test = recbole_data(model_cls, {**params, "epochs": epochs}, seqs, workdir)
        model = model_cls(config, train.dataset).to(config["device"])
        with _inside(workdir):
            trainer = Trainer(config, model)
            epoch_s, losses = [], []
            for epoch in range(epochs):
                t0 = time.perf_counter()
                data = _first_batches(train, max_batches) if max_batches else train
                loss = trainer._train_epoch(data, epoch, show_progress=False)
                epoch_s.append(time.perf_counter() - t0)
                losses.append(float(sum(loss)) if isinstance(loss, tuple) else float(loss))
            t0 = time.perf_counter()
            valid_result = trainer.evaluate(valid, load_best_model=False, show_progress=False)
            eval_s = time.perf_counter() - t0
            test_result = trainer.evaluate(test, load_best_model=False, show_progress=False)
    return {"model": model, "trainer": trainer, "valid": dict(valid_result), "test": dict(test_result),
            "epoch_s": epoch_s, "loss": losses, "eval_s": eval_s, "config": config}


def _first_batches(loader, n):
    for i, batch in enumerate(loader):
        if i >= n:
            break
        yield batch
