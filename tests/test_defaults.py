"""The front door's defaults: ./run_all.sh trains only when asked (or for a cheap profile), and every
command defaults to the same profile (bench.profiles.DEFAULT_PROFILE)."""
import subprocess

import pytest

from bench.cli import build_parser
from bench.errors import BenchError
from bench.profiles import DEFAULT_PROFILE, PROFILES_DIR, load_profile, profile_names


def dry_run(repo_root, *args) -> list[str]:
    """The commands ``./run_all.sh --dry-run ARGS`` would run, one per line."""
    done = subprocess.run(["bash", "run_all.sh", "--dry-run", *args], cwd=repo_root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def trains(commands: list[str]) -> bool:
    return any(" grid " in f" {c} " for c in commands)


def test_no_argument_renders_and_lists_but_does_not_train(repo_root):
    commands = dry_run(repo_root)
    assert not trains(commands), commands
    assert any(f"bench report --profile {DEFAULT_PROFILE}" in c for c in commands)
    assert any(f"bench.plan --profile {DEFAULT_PROFILE}" in c for c in commands)
    assert DEFAULT_PROFILE == "full" and not load_profile(DEFAULT_PROFILE).get("cheap")


def test_train_flag_trains_then_renders_again(repo_root):
    commands = dry_run(repo_root, "--train", "--seeds", "0")
    grid = [c for c in commands if " grid " in f" {c} "]
    assert grid == [f".venv/bin/bench grid --profile {DEFAULT_PROFILE} --seeds 0"]
    assert commands.index(grid[0]) < max(i for i, c in enumerate(commands) if " report " in c)


@pytest.mark.parametrize("name", profile_names())
def test_only_profiles_declared_cheap_train_without_the_flag(repo_root, name):
    assert trains(dry_run(repo_root, "--profile", name)) is bool(load_profile(name).get("cheap"))


def test_cheap_profiles_are_quick_and_smoke():
    assert {n for n in profile_names() if load_profile(n).get("cheap")} == {"quick", "smoke"}


def test_report_only_never_trains_a_cheap_profile(repo_root):
    commands = dry_run(repo_root, "--report-only", "--profile", "smoke")
    assert not trains(commands) and any("bench report --profile smoke" in c for c in commands)


def test_store_locations_reach_report_and_summary(repo_root):
    commands = dry_run(repo_root, "--results-dir", "/x/results", "--reports-dir", "/x/reports")
    for tool in ("bench report", "bench.plan"):
        line = next(c for c in commands if tool in c)
        assert "--results-dir /x/results --reports-dir /x/reports" in line


def test_cli_commands_default_to_the_same_profile():
    parser = build_parser()
    for argv in (["report"], ["check"], ["grid"], ["cost"], ["run", "--model", "SASRec", "--dataset", "beauty"]):
        assert parser.parse_args(argv).profile == DEFAULT_PROFILE, argv


def test_run_all_reads_the_constant_from_profiles_py(repo_root):
    line = f'DEFAULT_PROFILE = "{DEFAULT_PROFILE}"'
    assert line in (repo_root / "bench" / "profiles.py").read_text().splitlines()
    assert (PROFILES_DIR / f"{DEFAULT_PROFILE}.yaml").exists()


def test_cheap_must_be_a_boolean(tmp_path):
    text = (PROFILES_DIR / "smoke.yaml").read_text().replace("cheap: true", "cheap: yes please")
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(BenchError, match="cheap: expected true or false"):
        load_profile(str(path))


def test_plan_summary_totals_and_groups_the_queue():
    from bench.plan import summary

    queue = [{"model": "SASRec", "dataset": "beauty", "seed": 1, "hours": 0.5},
             {"model": "DiffuRec", "dataset": "beauty", "seed": 1, "hours": 2.0},
             {"model": "SASRec", "dataset": "toys", "seed": 1, "hours": None}]
    text = summary({"name": "full"}, queue, {"steam": 4}).splitlines()
    assert text[0].startswith("profile full: 3 runs without a record, projected 2.5 process-hours (1 without")
    assert [line.split()[:2] for line in text[1:3]] == [["SASRec", "2"], ["DiffuRec", "1"]]
    assert "4 runs on steam cannot run" in text[3]
    assert text[-1].endswith("./run_all.sh --train --profile full")
    assert "to train" not in summary({"name": "full"}, [], {})
