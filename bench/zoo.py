"""Find the models in ``models/``, resolve their hyperparameters and build them.

A model is one file ``models/<name>.py`` defining exactly one ``recbole``
``SequentialRecommender`` subclass, plus ``models/<name>.yaml`` beside it.  Nothing
else registers it: dropping the two files in is enough for the grid, the CLI and the
shared contract test to pick it up.  A folder named in ``$BENCH_MODELS_PATH``
(``os.pathsep``-separated) is searched after ``models/`` in the same way: a model can
live outside the repository, and a test can add a throwaway one.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from recbole.config import Config
from recbole.model.abstract_recommender import SequentialRecommender

from bench.errors import BenchError
from bench.yamltypes import check_model_yaml

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MODELS_PATH_ENV = "BENCH_MODELS_PATH"  # more folders of <name>.py + <name>.yaml pairs

# Keys every model gets unless its YAML or the profile says otherwise (RecBole names).
HARNESS_DEFAULTS = {
    "loss_type": "CE",  # full softmax over the catalogue, as in the paper
    "train_neg_sample_args": None,
    "learning_rate": 1e-3,
    "weight_decay": 0.0,
    "train_batch_size": 256,
    "eval_batch_size": 512,
    "epochs": 200,
    "stopping_step": 5,
    "eval_step": 1,
}
# Under ``protocol: paper`` every model is trained and selected as the DiffuRec authors' release
# does (WHUIR/DiffuRec f6f70c9, src/main.py defaults and src/trainer.py model_train); these beat
# the profile's budget and yield to a model's own protocol_overrides and a variant's params.
PROTOCOL_DEFAULTS = {
    "paper": {
        "epochs": 500,                     # int: --epochs 500
        "eval_step": 20,                   # int: --eval_interval 20
        "stopping_step": 5,                # int: --patience 5, in validations
        "lr_step_size": 100,               # int: StepLR(--decay_step 100)
        "lr_gamma": 0.1,                   # float: StepLR(--gamma 0.1)
        "checkpoint_rule": "any-metric",   # str: one checkpoint, the last validation where any metric improved (bench/engine.py)
        "validation_cadence": "release",   # str: after 0-based epochs 20, 40, ...; never at the last epoch
        "validate_all_users": True,        # bool: validation watches every user (no stop_users subset)
        "length_bucketing": False,         # bool: a plain shuffle of the training instances
    },
}
# Keys a model YAML may hold that are instructions to the harness, not model arguments.
SPECIAL_KEYS = ("protocol_overrides", "tuning")


@dataclass
class ModelSpec:
    """One model of the zoo: its class, YAML path and YAML contents."""

    name: str
    cls: type
    yaml_path: Path
    params: dict = field(default_factory=dict)
    protocol_overrides: dict = field(default_factory=dict)
    tuning: dict = field(default_factory=dict)  # param -> values its paper leaves open


def load_yaml(path: Path) -> dict:
    """Read a YAML mapping; a syntax error or non-mapping names the file."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as err:
        raise BenchError(f"malformed YAML in {path}: {err}".replace("\n", " ")) from None
    except OSError as err:
        raise BenchError(f"cannot read {path}: {err.strerror}") from None
    if not isinstance(data, dict):
        raise BenchError(f"{path}: expected a mapping of keys to values at top level")
    return data


def _model_class(module) -> type:
    classes = [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, SequentialRecommender)
        and obj.__module__ == module.__name__
    ]
    if len(classes) != 1:
        raise BenchError(
            f"{module.__file__}: expected exactly one SequentialRecommender subclass, "
            f"found {len(classes)}"
        )
    return classes[0]


def models_dirs() -> list[Path]:
    """Where models are found: ``models/``, then each folder of ``$BENCH_MODELS_PATH``."""
    extra = [Path(p) for p in os.environ.get(MODELS_PATH_ENV, "").split(os.pathsep) if p]
    return [MODELS_DIR, *extra]


def _import_model_module(yaml_path: Path):
    """The module ``models.<stem>`` of ``yaml_path``'s folder.

    A folder outside ``models/`` joins the ``models`` package's search path, so the module
    has the same dotted name wherever it lives (a pickled checkpoint or a worker imports it
    the same way).
    """
    import models

    folder = str(yaml_path.parent.resolve())
    if folder not in [str(Path(p).resolve()) for p in models.__path__]:
        models.__path__.append(folder)
    module = importlib.import_module(f"models.{yaml_path.stem}")
    if Path(module.__file__).resolve() != yaml_path.with_suffix(".py").resolve():
        raise BenchError(f"{yaml_path.with_suffix('.py')}: module name 'models.{yaml_path.stem}' is already "
                         f"taken by {module.__file__}")
    return module


def discover(models_dir: Path | None = None) -> dict[str, ModelSpec]:
    """All models, keyed by lower-case class name; a .py without a .yaml is ignored.

    models_dir: one folder to search (default: ``models_dirs()``).
    """
    specs = {}
    for folder in [Path(models_dir)] if models_dir else models_dirs():
        for yaml_path in sorted(folder.glob("*.yaml")):
            module_path = yaml_path.with_suffix(".py")
            if not module_path.exists():
                continue
            cls = _model_class(_import_model_module(yaml_path))
            if cls.__name__.lower() in specs:
                raise BenchError(f"{module_path}: model '{cls.__name__}' is also defined in "
                                 f"{specs[cls.__name__.lower()].yaml_path.with_suffix('.py')}")
            params = check_model_yaml(load_yaml(yaml_path), yaml_path)  # its typed comments
            overrides = params.pop("protocol_overrides", None) or {}
            tuning = params.pop("tuning", None) or {}
            specs[cls.__name__.lower()] = ModelSpec(cls.__name__, cls, yaml_path, params, overrides, tuning)
    return specs


def get_spec(name: str, models_dir: Path | None = None) -> ModelSpec:
    """Look a model up by name (case-insensitive); unknown names list the known ones."""
    specs = discover(models_dir)
    try:
        return specs[name.lower()]
    except KeyError:
        known = ", ".join(spec.name for spec in specs.values())
        raise BenchError(f"unknown model '{name}' (known: {known})") from None


def resolve_params(spec: ModelSpec, *layers: dict, protocol: str = "clean") -> dict:
    """Merge harness defaults < model YAML < each layer in order < the protocol's defaults
    (``PROTOCOL_DEFAULTS``) < the model's protocol overrides."""
    params = dict(HARNESS_DEFAULTS)
    params.update(spec.params)
    for layer in layers:
        params.update(layer or {})
    params.update(PROTOCOL_DEFAULTS.get(protocol, {}))
    params.update(spec.protocol_overrides.get(protocol, {}) or {})
    return params


class SequenceDataView:
    """The part of a RecBole ``Dataset`` a sequential model reads at construction.

    Building a real RecBole dataset costs 5-7 s per run; the models only ask for
    the catalogue and user counts.  Ids follow RecBole: 0 is padding.
    """

    def __init__(self, n_items: int, n_users: int, item_field="item_id", user_field="user_id"):
        self._num = {item_field: n_items, user_field: n_users}
        self.item_num, self.user_num = n_items, n_users

    def num(self, field_name: str) -> int:
        return self._num[field_name]


def recbole_config(cls: type, params: dict, dataset_name: str = "bench") -> Config:
    """A RecBole ``Config`` for an external model class, pinned to the CPU if no GPU."""
    params = dict(params)
    params.setdefault("data_path", str(Path.cwd()))
    params.setdefault("show_progress", False)
    params.setdefault("checkpoint_dir", "/tmp/bench-checkpoints")
    argv, sys.argv = sys.argv, sys.argv[:1]  # RecBole's Config parses the command line
    try:
        return Config(model=cls, dataset=dataset_name, config_dict=params)
    finally:
        sys.argv = argv


def build_model(spec: ModelSpec, params: dict, n_items: int, n_users: int, device=None):
    """Instantiate ``spec.cls`` for a catalogue of ``n_items`` ids (padding included).

    ``device``: where the model lives (default: the CPU).  RecBole's ``Config`` picks CUDA
    by itself when it sees one; the harness decides instead, and the model's
    ``self.device`` follows.
    """
    config = recbole_config(spec.cls, params)
    config["device"] = torch.device(device or "cpu")
    view = SequenceDataView(n_items, n_users, config["ITEM_ID_FIELD"], config["USER_ID_FIELD"])
    return spec.cls(config, view).to(config["device"]), config
