"""bench/gpu_session.sh as a dry run on the CPU: the pool runs its jobs, stops the one still
running at the deadline, and packs the finished records and the check's report into $OUT."""
import os
import subprocess
import sys
import tarfile

from conftest import needs_data


@needs_data
def test_session_runs_pool_stops_at_deadline_and_packs(tmp_path, repo_root):
    work, out = tmp_path / "work", tmp_path / "out"
    smoke = "grid --profile smoke --seeds 0 --models SASRec --datasets beauty --device cpu"
    jobs = "\n".join([
        f"smoke-dev:{smoke} --results-dir {work}/smoke-dev",
        f"smoke-cpu:{smoke} --results-dir {work}/smoke-cpu --state-dir {work}/states-cpu",
        "",  # blank lines are skipped
        # a paper-profile run cannot finish in the deadline: it is stopped, its record absent
        f"paper-SASRec-beauty-0:grid --profile paper --models SASRec --datasets beauty --seeds 0 "
        f"--device cpu --results-dir {work}/results",
    ])
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_DEVICE": "cpu", "DEADLINE": "75", "MIN_LEFT": "5",
           "POOL": "2", "OUT": str(out), "GPU_WORK": str(work), "JOBS": jobs, "OMP_NUM_THREADS": "1",
           "GPU_SPEED_ARGS": "--max-users 50 --max-batches 1 --models SASRec"}
    done = subprocess.run(["bash", "bench/gpu_session.sh"], cwd=repo_root, env=env, capture_output=True,
                          text=True, timeout=240)
    summary = (out / "summary.txt").read_text()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke-dev rc=0" in summary and "smoke-cpu rc=0" in summary
    assert "paper-SASRec-beauty-0 rc=124" in summary  # stopped by `timeout` at the deadline
    assert "1 runs compared; 1 with every test rank equal" in (out / "gpu-cpu.md").read_text()
    assert not (out / "paper-results.tgz").exists()  # nothing of the paper profile finished
    with tarfile.open(out / "logs.tgz") as tar:
        assert "logs/jobs.log" in tar.getnames()
