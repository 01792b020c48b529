"""The ``ray`` executor of ``bench grid``: every (model, dataset, seed) is one Ray task.

``run_with_ray(entries, profile, results_dir, data_dir, address)`` connects to a running
cluster (``ray.init(address=address)``; ``None`` starts a local instance), submits one
task per entry running ``bench.runner.run_entry``, and reports progress as tasks finish.
Each task writes its record into the same results store as the local executor (the
store's writes are atomic), so the results folder must be reachable at the same path
from every node (a shared filesystem), and so must the data folder.  Finished runs are
skipped by ``run_entry`` itself (same config hash), so an interrupted grid resumes.

Resources per task, from the environment of the driver:
  ``BENCH_RAY_NUM_CPUS``  CPUs per task (default 1; also the task's torch threads)
  ``BENCH_RAY_NUM_GPUS``  GPUs per task, fractions allowed (default 1 when the cluster
                          has GPUs, else 0)
Ray is imported only here, so the local executor never needs it.
"""
from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from bench.errors import BenchError


def _run_remote(entry, profile: dict, results_dir: str, data_dir: str | None, env: dict, threads: int) -> dict:
    """Body of one Ray task (runs on a worker): one grid entry, a small summary back."""
    os.environ.update(env)
    import bench  # noqa: F401  (RecBole compatibility before anything imports RecBole)
    import torch

    from bench.runner import run_entry

    torch.set_num_threads(max(int(threads), 1))
    status, record = run_entry(entry, profile, results_dir, data_dir)
    out = {"status": status}
    if status == "failed":
        err = record.get("error") or {}
        out["error"] = f"{err.get('type', 'Error')}: {err.get('message', '')}"
    elif record is not None:
        m = (record.get("metrics") or {}).get("test") or {}
        timing = record.get("timing") or {}
        out.update(hr10=m.get("HR@10"), ndcg10=m.get("NDCG@10"), epochs=timing.get("epochs_run"),
                   train_s=timing.get("train_s"), device=(record.get("env") or {}).get("device"))
    return out


def _resources(ray) -> tuple[float, float]:
    cpus = float(os.environ.get("BENCH_RAY_NUM_CPUS", 1))
    if "BENCH_RAY_NUM_GPUS" in os.environ:
        gpus = float(os.environ["BENCH_RAY_NUM_GPUS"])
    else:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    return cpus, gpus


def _label(entry) -> str:
    return f"{entry.dataset}/{entry.model}/seed-{entry.seed}"


def run_with_ray(entries, profile: dict, results_dir, data_dir=None, address=None) -> list:
    """Run ``entries`` as Ray tasks; returns the entries that failed (as the local executor)."""
    try:
        import bench  # noqa: F401  (numpy aliases ray 2.6 reads)
        import ray
    except ImportError as err:
        raise BenchError(f"the ray executor needs Ray installed ({err}); use --executor local") from None

    from datasets.prepare import load_sequences, resolve_data_dir

    results_dir = str(Path(results_dir).resolve())
    data_dir = str(resolve_data_dir(data_dir).resolve())
    # prepare each dataset's cache once here, before parallel tasks would race to write it
    for dataset in sorted({e.dataset for e in entries}):
        load_sequences(dataset, data_dir)
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=True)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise BenchError(f"cannot connect to Ray at {address or 'a new local instance'}: {err}") from None
        started = True
    env = {k: os.environ[k] for k in ("BENCH_CACHE_DIR",) if os.environ.get(k)}
    try:
        cpus, gpus = _resources(ray)
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(_run_remote)
        pending = {task.remote(e, profile, results_dir, data_dir, env, int(max(cpus, 1))): e for e in entries}
        failed = []
        bar = tqdm(total=len(entries), desc=f"grid {profile['name']} (ray)", unit="run")
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                entry = pending.pop(done[0])
                bar.update(1)
                try:
                    res = ray.get(done[0])
                except Exception as err:  # the worker died (OOM, lost node): nothing was recorded
                    res = {"status": "failed", "error": f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"}
                if res["status"] == "failed":
                    failed.append(entry)
                    tqdm.write(f"FAILED {_label(entry)}: {res['error']}")
                elif res["status"] == "ok":
                    tqdm.write(f"ok     {_label(entry)}: HR@10 {res['hr10']:.4f} NDCG@10 {res['ndcg10']:.4f} "
                               f"({res['epochs']} ep, {res['train_s']:.0f}s train, {res['device']})")
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            bar.close()
        print(f"grid {profile['name']}: {len(entries)} runs, {len(failed)} failed", flush=True)
        return failed
    finally:
        if started:
            ray.shutdown()
