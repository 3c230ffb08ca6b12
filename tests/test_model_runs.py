"""``--model``: BIDS Stats Models run end to end (participant and group levels)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "stats_models"
DS003 = REALDATA / "model-ds003-001_smdl.json"
SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("smdl")
    truth = make_demo_dataset(root / "bids", n_subjects=3, n_runs=2)
    return {"bids": root / "bids", "truth": truth, "root": root}


def participant(bids: Path, out: Path, *options: str) -> int:
    work = out.parent / f"work-{out.name}"
    return main(
        [str(bids), str(out), "participant", "--work-dir", str(work), "--no-reports", *options]
    )


def statmaps(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("sub-*/**/*"))
        if p.is_file()
    }


def test_written_effective_model_reproduces_the_run_byte_for_byte(demo, tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    options = ("--confounds", "motion6", "--smoothing-fwhm", "6", "--noise-model", "ols")
    assert participant(demo["bids"], first, *options) == 0
    model = first / "model-bidsglm_smdl.json"
    assert participant(demo["bids"], second, "--model", str(model)) == 0
    written, rerun = statmaps(first), statmaps(second)
    assert len(written) > 100 and sorted(written) == sorted(rerun)
    differing = [name for name in written if written[name] != rerun[name]]
    assert differing == []
    assert json.loads((second / "model-bidsglm_smdl.json").read_text()) == json.loads(
        model.read_text()
    )


def as_model_dataset(
    bids: Path, target: Path, task: str, conditions: dict[str, str], confounds: tuple = ()
) -> Path:
    """The demo renamed for a model: its task, its conditions, extra confound columns."""
    shutil.copytree(bids, target, copy_function=shutil.copy)
    for path in sorted(target.rglob("*task-faces*"), key=lambda p: -len(p.parts)):
        path.rename(path.with_name(path.name.replace("task-faces", f"task-{task}")))
    for sidecar in target.rglob("*.json"):
        text = sidecar.read_text()
        if '"faces"' in text:
            sidecar.write_text(text.replace('"faces"', f'"{task}"'))
    for events_path in target.rglob("*_events.tsv"):
        events = pd.read_csv(events_path, sep="\t")
        events["trial_type"] = events["trial_type"].replace(conditions)
        events.to_csv(events_path, sep="\t", index=False, na_rep="n/a")
    noise = np.random.default_rng(0)
    for confounds_path in target.rglob("*_desc-confounds_timeseries.tsv"):
        table = pd.read_csv(confounds_path, sep="\t")
        for column in confounds:
            table[column] = noise.standard_normal(len(table))
        table.to_csv(confounds_path, sep="\t", index=False, na_rep="n/a")
    return target


def as_ds003(bids: Path, target: Path) -> Path:
    """ds003's shape: task rhymejudgment, conditions word/pseudoword."""
    return as_model_dataset(bids, target, "rhymejudgment", {"face": "word", "house": "pseudoword"})


# The other models of the zoo that bids-glm accepts, each on a demo renamed to match it:
# task, condition renames, extra confound columns, the subject-level contrast label and the
# sign its z must have in the planted "face" blob
ZOO_RUNS = {
    "model-MoAE_smdl.json": ("auditory", {"face": "listening"}, (), "trialTypeListening", 1),
    "model-example_smdl.json": (
        "stroop",
        {"face": "congruent", "house": "incongruent"},
        ("nuissance1", "nuissance2"),
        "incongruentVsCongruent",
        -1,
    ),
    "model-walkthrough_smdl.json": (
        "simon",
        {"face": "incongruent", "house": "congruent"},
        (),
        "ivC",
        1,
    ),
}


@pytest.mark.parametrize("filename", sorted(ZOO_RUNS))
def test_accepted_zoo_models_run_on_a_matching_dataset(demo, tmp_path, filename):
    model = REALDATA / filename
    if not model.is_file():
        pytest.skip(f"real model absent: {model}")
    task, conditions, confounds, label, sign = ZOO_RUNS[filename]
    bids = as_model_dataset(demo["bids"], tmp_path / "bids", task, conditions, confounds)
    out = tmp_path / "out"
    assert participant(bids, out, "--model", str(model), "--skip-bids-validator") == 0
    func = out / "sub-01" / "func"
    z_maps = sorted(func.glob(f"sub-01_task-{task}_space-*_stat-z_statmap.nii.gz"))
    assert [p.name.split("_contrast-")[1].split("_stat")[0] for p in z_maps] == [label]
    face = tuple(demo["truth"]["planted"]["face"]["centre_ijk"])
    assert sign * nib.load(z_maps[0]).get_fdata()[face] > 5


@pytest.mark.skipif(not DS003.is_file(), reason=f"real model absent: {DS003}")
def test_ds003_model_runs_end_to_end(demo, tmp_path, capsys):
    bids = as_ds003(demo["bids"], tmp_path / "ds003")
    out = tmp_path / "out"
    assert participant(bids, out, "--model", str(DS003), "--skip-bids-validator") == 0
    func = out / "sub-01" / "func"
    design = pd.read_csv(
        func / f"sub-01_task-rhymejudgment_run-1_space-{SPACE}_design.tsv", sep="\t"
    )
    assert set(design.columns[:2]) == {"trial_type.word", "trial_type.pseudoword"}
    assert {"framewise_displacement", "trans_x", "rot_z", "a_comp_cor_05"} <= set(design)
    assert "trial_type.scrambled" not in design  # not in the model's X
    for label in ("trialTypeWord", "trialTypePseudoword", "wordGtPseudo", "taskVsBaseline"):
        run_map = func / f"sub-01_task-rhymejudgment_run-2_space-{SPACE}_contrast-{label}"
        assert Path(f"{run_map}_stat-z_statmap.nii.gz").is_file()
        assert (
            func / f"sub-01_task-rhymejudgment_space-{SPACE}_contrast-{label}"
            "_stat-z_statmap.nii.gz"
        ).is_file()
    # the planted "face" blob is now "word": it must light up at the subject level
    z = nib.load(
        func
        / f"sub-01_task-rhymejudgment_space-{SPACE}_contrast-trialTypeWord_stat-z_statmap.nii.gz"
    ).get_fdata()
    centre = tuple(demo["truth"]["planted"]["face"]["centre_ijk"])
    assert z[centre] > 5

    capsys.readouterr()
    code = main(
        [
            str(bids),
            str(out),
            "group",
            "--model",
            str(DS003),
            "--no-reports",
            "--work-dir",
            str(tmp_path / "work-group"),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "Dataset node F-test (contrast indicators design) not run" in err
    group = sorted(p.name for p in (out / "group").glob("*_stat-z_statmap.nii.gz"))
    assert group == [
        f"task-rhymejudgment_space-{SPACE}_contrast-taskVsBaseline_stat-z_statmap.nii.gz",
        f"task-rhymejudgment_space-{SPACE}_contrast-wordGtPseudo_stat-z_statmap.nii.gz",
    ]
    # word > pseudoword where "word" (ex-face) was planted, < where "pseudoword" (ex-house)
    # was, significant although a one-sample t over 3 subjects has 2 degrees of freedom (the
    # amplitude differs from the planted one: the model convolves with SPM's HRF, not Glover's)
    group_z = nib.load(out / "group" / group[1]).get_fdata()
    effect = nib.load(out / "group" / group[1].replace("stat-z", "stat-effect")).get_fdata()
    house = tuple(demo["truth"]["planted"]["house"]["centre_ijk"])
    assert effect[centre] > 1.5 and effect[house] < -1.5
    assert group_z[centre] > 2 and group_z[house] < -2 and np.isfinite(group_z).all()


def test_bad_model_exits_3_naming_the_field(demo, tmp_path, capsys):
    model = json.loads(DS003.read_text()) if DS003.is_file() else None
    if model is None:
        pytest.skip(f"real model absent: {DS003}")
    model["Nodes"][0]["Contrasts"][0]["Weights"] = [1, -1, 0]
    path = tmp_path / "bad_smdl.json"
    path.write_text(json.dumps(model))
    capsys.readouterr()
    assert participant(demo["bids"], tmp_path / "out", "--model", str(path)) == 3
    err = capsys.readouterr().err
    assert "Nodes[0].Contrasts[0].Weights" in err and str(path) in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
