"""The compatibility module makes RecBole 1.2.1 usable on numpy 2 / torch >= 2.6."""
import subprocess
import sys

import numpy as np
import torch


def test_numpy_aliases_restored():
    import bench  # noqa: F401

    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_
    assert np.bool8 is np.bool_


def test_config_builds_and_anomaly_mode_is_off():
    from recbole.config import Config
    from recbole.model.sequential_recommender.sasrec import SASRec

    config = Config(model=SASRec, dataset="bench_x",
                    config_dict={"data_path": "/tmp", "train_neg_sample_args": None})
    assert config["MAX_ITEM_LIST_LENGTH"] == 50
    assert not torch.is_anomaly_enabled()


def test_without_compat_recbole_breaks():
    """Guards the reason the module exists: if this starts passing, drop the patch."""
    code = ("from recbole.config import Config\n"
            "from recbole.model.sequential_recommender.sasrec import SASRec\n"
            "import torch; print(torch.is_anomaly_enabled())\n"
            "Config(model=SASRec, dataset='x', config_dict={'data_path': '/tmp', 'train_neg_sample_args': None})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().startswith("True")  # sine.py switched anomaly mode on
    assert out.returncode != 0 and "AttributeError" in out.stderr


def test_trainer_can_reload_its_own_checkpoint(tmp_path):
    import recbole.trainer.trainer as trainer_module

    path = tmp_path / "ckpt.pth"
    torch.save({"config": {"weird": np.float64(1.0)}, "state": 1}, path)
    assert trainer_module.torch.load(path)["state"] == 1
