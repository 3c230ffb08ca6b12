"""Run every defect of the corpus (`defects.py`) through the command line, in process.

Each must end with the expected exit code and words on stderr, without a traceback or an
"internal error"; the input tree must be byte-for-byte unchanged, and the output folder
must hold no partial result: no temporary file, no map without its sidecar and its unit's
manifest, and, after a success, at least one statistical map.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_tiny_dataset, tree_digest
from defects import BASE_ARGS, DEFECTS, Defect

from bids_glm.cli.main import main
from bids_glm.inputs.entities import split_name


def _filled(text: str, bids: Path, out: Path, tmp: Path) -> str:
    return text.format(bids=bids, out=out, tmp=tmp)


def _check_outputs(out: Path, code: int) -> None:
    if not out.is_dir():
        assert code != 0, "exit 0 without an output folder"
        return
    leftovers = [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left: {leftovers}"
    manifests = {}
    for path in (out / "logs" / "manifests").glob("*.json"):
        manifests[path.name] = json.loads(path.read_text())  # complete JSON
    statmaps = sorted(out.glob("sub-*/**/*_statmap.nii.gz"))
    for statmap in statmaps:
        assert statmap.with_name(statmap.name.replace(".nii.gz", ".json")).is_file()
        entities = split_name(statmap)[0]
        unit = [
            n
            for n in manifests
            if split_name(n)[0].items()
            >= {k: v for k, v in entities.items() if k in ("sub", "ses", "task", "space")}.items()
        ]
        assert unit, f"{statmap.name} has no manifest of its unit"
    if code == 0:
        assert statmaps, "success without a statistical map"
    else:
        assert not [p for p in out.glob("sub-*/**/*") if p.is_file()] or manifests


@pytest.mark.parametrize("defect", DEFECTS, ids=[d.name for d in DEFECTS])
def test_defect(defect: Defect, tmp_path: Path, monkeypatch, capsys) -> None:
    bids = make_tiny_dataset(tmp_path / "bids")
    out = tmp_path / "out"
    defect.damage(bids, monkeypatch)
    before = tree_digest(bids)
    args = defect.args if defect.replace_args else (*BASE_ARGS, *defect.args)
    code = main([_filled(a, bids, out, tmp_path) for a in args])
    err = capsys.readouterr().err
    monkeypatch.undo()
    assert code == defect.code, err
    assert "Traceback" not in err and "internal error" not in err, err
    for word in defect.words:
        assert _filled(word, bids, out, tmp_path) in err, err
    assert tree_digest(bids) == before, "the input was modified"
    _check_outputs(out, code)


def test_corpus_is_large_and_unique() -> None:
    names = [d.name for d in DEFECTS]
    assert len(set(names)) == len(names) >= 40
