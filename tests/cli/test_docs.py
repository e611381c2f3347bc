"""The contract lives in the repository: docs/ exists, README links to it, its links resolve,
and the code points there rather than to a file that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

from scheduler.model import RUN_FIELDS

ROOT = Path(__file__).parent.parent.parent
DOCS = ROOT / "docs"
PAGES = ("jobs.md", "fire-times.md", "runs.md", "cli.md", "guarantees.md", "operations.md")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_readme_links_every_page_of_the_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in ("README.md", *PAGES):
        assert f"(docs/{page})" in readme, f"README does not link docs/{page}"


def test_every_relative_link_resolves() -> None:
    for doc in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in LINK.findall(doc.read_text()):
            if "://" in target:
                continue
            assert (doc.parent / target).exists(), f"{doc.name}: broken link {target}"


def test_run_fields_table_lists_every_field() -> None:
    text = (DOCS / "runs.md").read_text()
    listed = re.findall(r"^\| `([a-z_]+)` \| ", text.split("## Fields", 1)[1], re.MULTILINE)
    assert listed == list(RUN_FIELDS)


def test_no_code_points_at_a_file_outside_the_repository() -> None:
    for path in [*(ROOT / "scheduler").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        if path == Path(__file__):
            continue
        assert "DESIGN.md" not in path.read_text(), f"{path} mentions DESIGN.md; use docs/"
