"""bench/lanes.sh pops its queue under a lock and logs each job's real exit status."""
import os
import subprocess


def test_lane_empties_the_queue_and_logs_each_exit_status(tmp_path, repo_root):
    queue = tmp_path / "queue.txt"
    queue.write_text(f"{repo_root} NoSuchModel beauty 0\n")
    env = {**os.environ, "RESULTS": str(tmp_path / "results"), "BENCH_STATE_DIR": str(tmp_path / "states")}
    subprocess.run(["bash", "bench/lanes.sh", "1", str(queue)], cwd=repo_root, env=env, check=True, timeout=120)
    log = (tmp_path / "lanes.log").read_text().splitlines()
    assert queue.read_text() == ""
    assert log[0].endswith("lane1 start " + f"{repo_root} NoSuchModel beauty 0")
    assert " end rc=0 " not in log[1] and log[1].endswith("NoSuchModel beauty 0")  # the unknown model fails
    assert "nosuchmodel" in (tmp_path / "lane1.log").read_text().lower()


def test_a_lane_stopped_mid_job_resumes_that_job(tmp_path, repo_root):
    queue = tmp_path / "queue.txt"
    queue.write_text("")
    (tmp_path / "lane2.current").write_text(f"{repo_root} NoSuchModelA toys 1\n")  # left by a killed lane
    env = {**os.environ, "RESULTS": str(tmp_path / "results"), "BENCH_STATE_DIR": str(tmp_path / "states")}
    subprocess.run(["bash", "bench/lanes.sh", "2", str(queue)], cwd=repo_root, env=env, check=True, timeout=120)
    log = (tmp_path / "lanes.log").read_text().splitlines()
    assert log[0].endswith(f"lane2 resume {repo_root} NoSuchModelA toys 1") and " end " in log[1]
    assert not (tmp_path / "lane2.current").exists()  # done (here: failed), so not resumed again
