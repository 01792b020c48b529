"""Make RecBole 1.2.1 run on numpy 2.x and torch >= 2.6, without forking it.

Import this module before anything from ``recbole`` (``bench/__init__.py`` does).
Each patch below answers one measured breakage (see docs/internals.md, "RecBole compatibility"):

1. numpy 2 removed ``np.float_``, ``np.complex_``, ``np.unicode_`` (read by
   ``Config.compatibility_settings``) and ``np.float`` (read by the evaluator and
   ``Interaction``); ray 2.6.3 reads ``np.bool8``.  We restore them as aliases.
2. ``recbole.model.sequential_recommender.sine`` calls
   ``torch.autograd.set_detect_anomaly(True)`` at import time, and importing any
   RecBole sequential model imports it: every backward pass is then ~1.6x slower.
   We import the package once here and switch anomaly mode back off.
3. torch >= 2.6 loads checkpoints with ``weights_only=True``; RecBole's own
   checkpoints hold its pickled ``Config``, so ``Trainer`` cannot reload the best
   model.  Only inside ``recbole.trainer.trainer`` (files that RecBole itself wrote in
   this process) ``torch.load`` defaults to ``weights_only=False``.

Never ``recbole.quick_start``: it imports ray; the suite drives RecBole directly.
"""
import functools

import numpy as np
import torch

_NUMPY_ALIASES = {
    "float_": np.float64,
    "complex_": np.complex128,
    "unicode_": np.str_,
    "float": float,
    "bool8": np.bool_,
}


def patch_numpy() -> None:
    """Restore the numpy 1.x aliases RecBole 1.2.1 and ray 2.6.3 still read."""
    for name, value in _NUMPY_ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)


class _TrustedCheckpointTorch:
    """Stand-in for the ``torch`` name inside ``recbole.trainer.trainer``."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    @functools.wraps(torch.load)
    def load(*args, **kwargs):
        kwargs.setdefault("weights_only", False)
        return torch.load(*args, **kwargs)


def patch_recbole() -> None:
    """Apply all patches; idempotent."""
    patch_numpy()
    import recbole.model.sequential_recommender  # noqa: F401  (imports sine.py)
    import recbole.trainer.trainer as trainer_module

    torch.autograd.set_detect_anomaly(False)
    trainer_module.torch = _TrustedCheckpointTorch()


patch_recbole()
