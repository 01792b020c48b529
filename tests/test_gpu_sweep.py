"""The GPU sweep of the full profile (bench/gpu_sweep.sh, bench/gpu_sweep.py): packing within a device
call's file limits, no job started past the deadline, a CPU dry run that leaves records naming the
device and the gate's verdict, collecting only behind a passed gate, and GPU-made cells marked in Table 2."""
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from bench import gpu_sweep, store
from bench.report import tables
from bench.report.collect import collect as collect_store
from bench.report.context import Context
from conftest import needs_data
from test_report import PROFILE, write_fake_run

H100 = "NVIDIA H100 80GB HBM3"


def noisy_run(root, profile, dataset, model, seed, n_users, device="cpu"):
    """A run folder whose ranks.npz does not compress (random ranks), about 8 bytes per user."""
    rng = np.random.default_rng(seed)
    ranks = {"users": np.arange(n_users), "test": rng.integers(0, 2**31 - 1, n_users, dtype=np.int32),
             "valid": rng.integers(0, 2**31 - 1, n_users, dtype=np.int32)}
    record = {"status": "ok", "profile": profile, "dataset": dataset, "model": model, "seed": seed,
              "metrics": {"test": store.metrics_from_ranks(ranks["test"])}, "env": {"device": device}}
    store.write_run(store.run_dir(root, profile, dataset, model, seed), record, ranks)


def members(parts) -> list[str]:
    names = []
    for part in parts:
        with tarfile.open(part) as tar:
            names += tar.getnames()
    return names


def test_pack_splits_into_few_parts_of_bounded_size(tmp_path):
    root = tmp_path / "results"
    for seed in range(8):
        noisy_run(root, "full", "beauty", "SASRec", seed, 6000)  # ~100 KB each
    noisy_run(root, "full", "beauty", "Huge", 0, 40000)  # larger than a part: left out, the rest still packed
    gate_dir = tmp_path / "gate"
    gpu_sweep.write_gate(gate_dir, {"verdict": "equivalent", "passed": True}, "# gate\n")
    limits = {"PACK_PARTS": 3, "PACK_PART_BYTES": 250_000, "PACK_TOTAL_BYTES": 700_000}
    res = gpu_sweep.pack(root / "full", tmp_path / "out", first=[gate_dir / "gate.json", gate_dir / "gate.md"],
                         limits=limits)
    parts = sorted((tmp_path / "out").glob("full-results-*.tgz"))
    assert [str(p) for p in parts] == res["parts"] and len(parts) == 3
    assert all(p.stat().st_size <= 250_000 for p in parts)
    assert sum(p.stat().st_size for p in parts) <= 700_000
    names = members(parts)
    assert names[:2] == ["gate/gate.json", "gate/gate.md"]  # the verdict travels first
    assert "full/beauty/Huge/seed-0" in res["left_out"]
    packed = [n for n in names if n.endswith("record.json")]
    assert len(packed) == len(res["packed"]) - 2 == 8 - len(res["left_out"]) + 1
    # a smaller pack later removes the parts it no longer needs
    res = gpu_sweep.pack(tmp_path / "none", tmp_path / "out", first=[gate_dir / "gate.json"], limits=limits)
    assert len(list((tmp_path / "out").glob("full-results-*.tgz"))) == 1 == len(res["parts"])


def test_pack_limits_come_from_the_environment():
    limits = gpu_sweep.limits_from_env({"PACK_PARTS": "2"})
    assert limits["PACK_PARTS"] == 2 and limits["PACK_PART_BYTES"] == 15 * 2**20
    with pytest.raises(gpu_sweep.BenchError, match="PACK_PART_BYTES"):
        gpu_sweep.limits_from_env({"PACK_PART_BYTES": "15M"})


def _pack_for_collect(tmp_path, passed: bool):
    root = tmp_path / "dev"
    noisy_run(root, "full", "ml-1m", "SASRec", 0, 50, device=H100)
    noisy_run(root, "full", "beauty", "SASRec", 0, 50, device=H100)  # already committed: left as it is
    gpu_sweep.write_gate(tmp_path / "gate", {"verdict": "equivalent" if passed else "different", "passed": passed},
                         "# gate\n")
    gpu_sweep.pack(root / "full", tmp_path / "out", first=[tmp_path / "gate" / "gate.json", tmp_path / "gate" / "gate.md"])
    noisy_run(tmp_path / "results", "full", "beauty", "SASRec", 0, 50)  # the committed CPU record


@pytest.mark.parametrize("passed", [True, False])
def test_collect_admits_records_only_behind_a_passed_gate(tmp_path, passed):
    _pack_for_collect(tmp_path, passed)
    argv = ["collect", "--src", str(tmp_path / "out"), "--results", str(tmp_path / "results"),
            "--reports", str(tmp_path / "reports"), "--quarantine", str(tmp_path / "quarantine")]
    assert gpu_sweep.main(argv) == (0 if passed else 1)
    landed = tmp_path / ("results" if passed else "quarantine") / "full/ml-1m/SASRec/seed-0/record.json"
    assert json.loads(landed.read_text())["env"]["device"] == H100
    assert not (tmp_path / ("quarantine" if passed else "results") / "full/ml-1m").exists()
    kept = store.read_record(tmp_path / "results/full/beauty/SASRec/seed-0")
    assert kept["env"]["device"] == "cpu"  # never overwritten
    assert (tmp_path / "reports/full/gpu-gate.json").is_file()


def test_table2_marks_gpu_made_cells(tmp_path):
    for seed in (0, 1):
        write_fake_run(tmp_path, "beauty", "DiffuRec", seed, (60, 30, 30))
        write_fake_run(tmp_path, "beauty", "SASRec", seed, (30, 20, 20))
    folder = store.run_dir(tmp_path, PROFILE, "beauty", "SASRec", 1)
    record = store.read_record(folder)
    record["env"]["device"] = H100
    store.write_json(folder / "record.json", {k: v for k, v in record.items() if k != "_dir"})
    ctx = Context(collect_store(tmp_path, PROFILE))
    md_table, = [t for t in tables.table2(ctx) if t.stem == "table2"]
    row = next(line for line in md_table.md.splitlines() if line.startswith("| Beauty | HR@10"))
    sasrec, diffurec = row.split("|")[3], row.split("|")[4]
    assert sasrec.strip().endswith("‡") and "‡" not in diffurec
    assert f"‡: at least one seed of the cell trained on {H100}" in md_table.md
    assert r"$^{\ddagger}$" in md_table.tex and H100 in md_table.tex
    assert tables.gpu_devices(ctx.col) == {("beauty", "SASRec"): [H100]}


def _sweep(repo_root, tmp_path, **env):
    base = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_DEVICE": "cpu", "OUT": str(tmp_path / "out"),
            "GPU_WORK": str(tmp_path / "work"), "OMP_NUM_THREADS": "1", "POOL": "3"}
    done = subprocess.run(["bash", "bench/gpu_sweep.sh"], cwd=repo_root, env={**base, **env}, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return (tmp_path / "out" / "summary.txt").read_text()


def test_sweep_starts_nothing_past_the_deadline(tmp_path, repo_root):
    jobs = "\n".join(f"job{i}:grid --profile smoke --device cpu --results-dir {tmp_path}/r" for i in range(3))
    summary = _sweep(repo_root, tmp_path, DEADLINE="1", MIN_LEFT="60", JOBS=jobs)
    assert "gate not started (deadline)" in summary
    assert all(f"job{i} not started (deadline)" in summary for i in range(3)) and "rc=" not in summary
    assert "0 records" in summary


TINY = """description: a profile small enough for a CPU dry run of the sweep
protocol: clean
datasets: [beauty]
models: [SASRec, GRU4Rec]
seeds: [0]
max_users: 40
max_train_prefixes: 2
train: {epochs: 1, stopping_step: 1, eval_step: 1, train_batch_size: 256, eval_batch_size: 512}
"""


@needs_data
def test_sweep_dry_run_on_cpu_packs_records_naming_the_device_and_the_gate(tmp_path, repo_root):
    profile = tmp_path / "tiny.yaml"
    profile.write_text(TINY)
    cpu = tmp_path / "cpu"
    subprocess.run([sys.executable, "-m", "bench.cli", "grid", "--profile", str(profile), "--models", "SASRec",
                    "--device", "cpu", "--results-dir", str(cpu)], cwd=repo_root, check=True, capture_output=True,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})
    summary = _sweep(repo_root, tmp_path, DEADLINE="200", MIN_LEFT="5", SWEEP_PROFILE=str(profile),
                     SWEEP_ARGS="--models GRU4Rec", GATE_RECORD=str(cpu / "tiny/beauty/SASRec/seed-0"),
                     GATE_PROFILE=str(profile))
    assert "tiny-GRU4Rec-beauty-0 rc=0" in summary and "gate rc=0" in summary
    assert "1 records (1 ok), trained on: cpu" in summary
    unpacked = tmp_path / "unpacked"
    assert gpu_sweep.unpack_parts(tmp_path / "out", unpacked)
    gate = json.loads((unpacked / "gate/gate.json").read_text())
    assert gate["verdict"] == "identical" and gate["passed"] and gate["device"] == "cpu"
    assert "Equivalence gate: beauty/SASRec/seed-0 on cpu" in (unpacked / "gate/gate.md").read_text()
    record = store.read_record(unpacked / "tiny/beauty/GRU4Rec/seed-0")
    assert record["env"]["device"] == "cpu" and (unpacked / "tiny/beauty/GRU4Rec/seed-0/ranks.npz").is_file()
    assert (unpacked / "logs/jobs.log").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["full-results-0.tgz", "summary.txt"]


def test_gate_without_its_record_is_one_line_and_a_failed_verdict(tmp_path, capsys):
    assert gpu_sweep.main(["gate", "--record", str(tmp_path / "nowhere"), "--device", "cpu",
                           "--out", str(tmp_path / "gate")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nowhere" in err
    assert gpu_sweep.read_gate(tmp_path / "gate") == {**gpu_sweep.read_gate(tmp_path / "gate"), "verdict": "error",
                                                       "passed": False}
