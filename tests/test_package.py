"""Packaging rules: nilearn and nipy are test oracles only, never imported by the package."""

from __future__ import annotations

import ast
from pathlib import Path

import bids_glm

FORBIDDEN = {"nilearn", "nipy"}


def test_package_never_imports_test_oracles():
    offenders = []
    for path in Path(bids_glm.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []
