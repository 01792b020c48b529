"""Every `docs/<page>.md#<anchor>` named in code, configs, the README, the docs and the committed reports
points at a heading that exists: a renamed section breaks a test, not a reader's link."""
import re
from pathlib import Path

from bench.report.readme import anchor

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"docs/([a-z_-]+\.md)#([A-Za-z0-9_-]+)")
SOURCES = ["bench/**/*.py", "bench/**/*.yaml", "models/*.py", "models/*.md", "datasets/**/*.py", "README.md",
           "docs/*.md", "reports/*/*.md"]


def headings(page: Path) -> set[str]:
    """GitHub anchors of every Markdown heading of ``page`` (outside fenced code)."""
    out, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#{1,6} ", line):
            out.add(anchor(line.lstrip("#")))
    return out


def test_anchor_slug_is_githubs():
    assert anchor("`bench reproduce`: identical, equivalent or different") == \
        "bench-reproduce-identical-equivalent-or-different"


def test_every_docs_anchor_named_anywhere_exists():
    found = 0
    for pattern in SOURCES:
        for path in REPO.glob(pattern):
            for page, target in LINK.findall(path.read_text(errors="replace")):
                found += 1
                doc = REPO / "docs" / page
                assert doc.exists(), f"{path.relative_to(REPO)} names docs/{page}, which does not exist"
                assert target in headings(doc), f"{path.relative_to(REPO)} names docs/{page}#{target}: no such heading"
    assert found >= 5  # the scan reads the files that carry the links
