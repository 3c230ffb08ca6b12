"""Output names of real datasets with very long labels (ds110 of bids-examples) fit the limit."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import make_tiny_dataset

from bids_glm.cli.main import main
from bids_glm.derivatives import naming

# ds110's task and two of its trial types
TASK = "IncidentalencodingtaskusingPosnercueingparadigmwithobjectvgreeblejudgment"
LONG_TYPES = (
    "invalid_other_greeble_cue (invalid cue where following stimulus was an untested or "
    "no-response greeble)",
    "valid_other_object_cue (valid cue where following stimulus was an untested or "
    "no-response object)",
)


def _long_named_dataset(root: Path) -> Path:
    bids = make_tiny_dataset(root, subjects=("01", "02"), runs=("1", "2"), task=TASK)
    rows = [(2, 4, LONG_TYPES[0]), (20, 4, LONG_TYPES[1]), (34, 4, LONG_TYPES[0]), (44, 2, "x")]
    events = "onset\tduration\ttrial_type\n" + "".join(f"{o}\t{d}\t{t}\n" for o, d, t in rows)
    for path in bids.glob("sub-*/func/*_events.tsv"):
        path.write_text(events)
    return bids


def _names(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())


def test_long_labels_are_shortened_the_same_way_in_every_name(tmp_path):
    bids = _long_named_dataset(tmp_path / "bids")
    outputs = []
    for name in ("out", "again"):
        out = tmp_path / name
        command = [str(bids), str(out), "participant", "--no-reports", "--work-dir"]
        assert main([*command, str(tmp_path / "work"), "--model-maps"]) == 0
        outputs.append(out)
    out = outputs[0]
    assert _names(out) == _names(outputs[1])  # same inputs, same names
    names = _names(out)
    assert max(len(Path(n).name.encode()) for n in names) <= 241  # room for the temporary name
    short_task = naming.short_label(TASK)
    assert len(short_task) == naming.MAX_LABEL_BYTES and short_task.startswith(TASK[:40])
    z_maps = [n for n in names if n.endswith("_stat-z_statmap.nii.gz") and "_run-" not in n]
    sidecars = [json.loads((out / n.replace(".nii.gz", ".json")).read_text()) for n in z_maps]
    assert {s["ContrastName"] for s in sidecars} == {*LONG_TYPES, "x"}
    for sidecar in sidecars:
        assert sidecar["OriginalLabels"]["task"] == TASK
        if sidecar["ContrastName"] != "x":
            assert sidecar["OriginalLabels"]["contrast"] == sidecar["ContrastLabel"]
            assert len(naming.short_label(sidecar["ContrastLabel"])) == naming.MAX_LABEL_BYTES
    betas = [n for n in names if "_stat-beta_statmap.json" in n]
    columns = {json.loads((out / n).read_text())["Column"] for n in betas}
    assert set(LONG_TYPES) <= columns
    # the group level and the reports find everything by the shortened names
    group = [str(bids), str(out), "group", "--task", TASK, "--work-dir", str(tmp_path / "work")]
    assert main(group) == 0
    group_maps = sorted(p.name for p in (out / "group").glob("*_stat-z_statmap.nii.gz"))
    assert len(group_maps) == 3 and all(f"task-{short_task}_" in n for n in group_maps)
    assert (out / "group.html").is_file()
    reports = [str(bids), str(out), "participant", "--reports-only", "--no-pdf"]
    assert main([*reports, "--work-dir", str(tmp_path / "work")]) == 0
    assert "invalid_other_greeble_cue (invalid cue" in (out / "sub-01.html").read_text()


def test_short_labels_are_their_own_short_form():
    label = "a" * 200
    short = naming.short_label(label)
    assert len(short.encode()) == naming.MAX_LABEL_BYTES
    assert naming.short_label(short) == short
    assert naming.short_label("a" * 199 + "b") != short  # the hash tells them apart
    assert naming.short_label("face") == "face"
    assert naming.original_labels({"task": label, "sub": "01"}) == {"task": label}
