"""The test tiers: one pytest marker per folder of tests/, registered in pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.conftest import TIERS

TESTS = Path(__file__).parent.parent


def test_every_folder_of_tests_is_a_registered_tier() -> None:
    folders = {p.name for p in TESTS.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    pyproject = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())
    registered = {m.split(":")[0] for m in pyproject["tool"]["pytest"]["ini_options"]["markers"]}
    assert folders == set(TIERS) == registered
