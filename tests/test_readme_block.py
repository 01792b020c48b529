"""The README's generated block (bench/report/readme.py) and the README's front-door promises."""
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.report import readme

REPO = Path(__file__).resolve().parent.parent
# documents the README links that other pieces of work write (issue 25: fidelity; issue 27: statistics,
# resuming, campaign); a link outside this list must resolve now
PENDING: set[str] = set()  # reports linked before their first record renders them


def test_committed_readme_block_is_what_the_committed_reports_give():
    text = (REPO / "README.md").read_text()
    assert readme.current_block(text) == readme.readme_block(REPO / "reports"), \
        "README.md's generated block is stale: run `bench report --profile full`"


def copy_reports(tmp_path) -> Path:
    """A copy of the files the block reads, to change one value at a time."""
    root = tmp_path / "reports"
    (root / "full").mkdir(parents=True)
    for name in ("table2.csv", "significance_table2.csv", "controls.csv", "audit.json", "fidelity.csv", "fidelity.md"):
        shutil.copy(REPO / "reports" / "full" / name, root / "full" / name)
    (root / "speed").mkdir()
    shutil.copy(REPO / "reports" / "speed" / "campaign-full.md", root / "speed" / "campaign-full.md")
    return root


def test_block_follows_the_csv_it_reads(tmp_path):
    root = copy_reports(tmp_path)
    before = readme.readme_block(root)
    sig = pd.read_csv(root / "full" / "significance_table2.csv")
    row = (sig["dataset"] == "beauty") & (sig["metric"] == "HR@10") & (sig["model_a"] == "DiffuRec")
    sig.loc[row, "hb_ci_low"] = -0.5  # the headline test's interval is what the block quotes
    sig.to_csv(root / "full" / "significance_table2.csv", index=False)
    after = readme.readme_block(root)
    assert before != after and "-50.000" in after and "-50.000" not in before


def test_block_names_datasets_without_records_and_missing_inputs(tmp_path):
    root = copy_reports(tmp_path)
    table2 = pd.read_csv(root / "full" / "table2.csv")
    table2[table2["dataset"] == "beauty"].to_csv(root / "full" / "table2.csv", index=False)
    (root / "full" / "audit.json").unlink()
    (root / "speed" / "campaign-full.md").unlink()
    block = readme.readme_block(root)
    assert "No DiffuRec records yet on: Toys, ML-1M, Steam." in block
    assert "No audit yet: run `bench check --profile full`." in block
    assert "`bench cost --profile full` has not been run" in block
    assert "| Toys |" not in block.split("Controls")[0]


def test_claim_links_point_at_audit_headings():
    audit = (REPO / "reports" / "full" / "audit.md").read_text()
    anchors = {readme.anchor(h) for h in re.findall(r"^#+ (.+)$", audit, re.M)}
    rows, _ = readme.claim_rows(REPO / "reports" / "full")
    assert rows
    for row in rows:
        target = re.search(r"audit\.md#([^)]+)\)", row[0]).group(1)
        assert target in anchors, target


def test_a_malformed_campaign_page_is_one_clear_error(tmp_path):
    root = copy_reports(tmp_path)
    (root / "speed" / "campaign-full.md").write_text("# Runs left\n\nnothing here\n")
    with pytest.raises(BenchError, match="campaign-full.md: no 'N runs without a record'"):
        readme.readme_block(root)


def test_replace_block_needs_exactly_one_pair_of_markers():
    block = f"{readme.BEGIN}\nnew\n{readme.END}"
    text = f"top\n{readme.BEGIN}\nold\n{readme.END}\nbottom\n"
    assert readme.replace_block(text, block) == f"top\n{block}\nbottom\n"
    with pytest.raises(BenchError, match="exactly one"):
        readme.replace_block(text + readme.BEGIN, block)
    with pytest.raises(BenchError, match="exactly one"):
        readme.replace_block("no markers", block)


def test_update_readme_only_for_the_full_profile_into_the_repository_reports(tmp_path):
    copy = tmp_path / "README.md"
    copy.write_text(f"x\n{readme.BEGIN}\nold\n{readme.END}\n")
    assert readme.update_readme(tmp_path / "reports", "full", readme=copy) is None  # reports rendered elsewhere
    assert readme.update_readme(REPO / "reports", "quick", readme=copy) is None
    assert readme.update_readme(REPO / "reports", "full", readme=copy) == copy
    assert readme.current_block(copy.read_text()) == readme.readme_block(REPO / "reports")


def test_readme_is_a_landing_page():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 12 * 1024
    for needle in ("https://doi.org/10.1145/3631117", "https://github.com/WHUIR/DiffuRec", "(LICENSE)",
                   "(CITATION.cff)", "scipy.stats", "pandas", "matplotlib", "tqdm", "PyYAML", "RecBole"):
        assert needle in text, needle
    for phrase in ("this machine", "lent GPU", "/work/", "here,", "here.", "here;"):
        assert phrase not in text, phrase


def test_readme_has_the_one_test_command_ci_runs():
    commands = [line.split("#")[0].strip() for line in (REPO / "README.md").read_text().splitlines()
                if line.strip().startswith("./run_all.sh --tests")]
    assert commands == ["./run_all.sh --tests"]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#")]
    assert ci[-1] == "./run_all.sh --tests"


def test_readme_and_docs_links_resolve():
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path = (page.parent / target).resolve()
            if path.relative_to(REPO).as_posix() in PENDING:
                continue
            assert path.exists(), f"{page.relative_to(REPO)} links {target}, which does not exist"


def test_block_answers_the_fidelity_question_from_fidelity_csv(tmp_path):
    """The plain-words fidelity answer is read from fidelity.csv: change a single-cause Δ, the block follows;
    a Δ whose interval's low end clears clean DiffuRec's deficit to SASRec says the headline waits."""
    root = copy_reports(tmp_path)
    path = root / "full" / "fidelity.csv"
    frame = pd.read_csv(path)
    cause = (frame["part"] == "cause") & (frame["metric"] == "NDCG@10")
    if not cause.any():
        pytest.skip("no single-cause record in the committed full reports")
    direct = ["sasrec_diff_pct", "sasrec_ci_low_pct", "sasrec_ci_high_pct"]
    frame[direct] = np.nan  # no common seed with SASRec: the block weighs Δ against the clean deficit
    frame.loc[cause, ["diff_pct", "ci_low_pct", "ci_high_pct"]] = [9.5, 9.25, 9.75]
    frame.to_csv(path, index=False)
    block = readme.readme_block(root)
    assert "+9.500 [+9.250, +9.750]" in block
    assert "enough, even at its interval's low end, to close that deficit" in block
    frame.loc[cause, ["diff_pct", "ci_low_pct", "ci_high_pct"]] = [0.01, -0.1, 0.12]
    frame.to_csv(path, index=False)
    assert "less than that deficit: no release change run so far turns the headline" in readme.readme_block(root)
    # the run met SASRec of its seed: the block says where it stands against it, by that interval
    frame["sasrec_seeds"] = frame.get("sasrec_seeds", pd.Series(index=frame.index, dtype=object)).astype(object)
    frame.loc[cause, direct + ["sasrec_seeds"]] = [0.3, 0.05, 0.55, "0"]
    frame.to_csv(path, index=False)
    assert ("against SASRec of seed 0 it stands at +0.300 [+0.050, +0.550] (paired over users): above SASRec even "
            "at its interval's low end") in readme.readme_block(root)
    frame.loc[cause, direct] = [-0.3, -0.55, -0.05]
    frame.to_csv(path, index=False)
    assert "still below SASRec at its interval's high end" in readme.readme_block(root)
