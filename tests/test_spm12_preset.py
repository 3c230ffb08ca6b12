"""``--preset spm12`` end to end on the ``spm12_planted`` subject, against SPM12 r7771's maps.

Each case runs the command line once (module-scoped) and compares the written
subject-level maps with SPM's images of the matching reference model.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from spm12_reference import ROOT, load_model, mask_path, needs_reference

from bids_glm.cli.main import main

pytestmark = needs_reference
PREFIX = "sub-pilot01_task-facehouse_space-MNI152NLin2009cAsym"
# reference model -> options on top of --preset spm12 (run filter, noise model, high-pass)
CASES = {
    "multisession_ar1": {},
    "multisession_ols": {"options": ("--noise-model", "ols")},
    "run1_ar1": {"run": 1},
    "run1_derivs": {"run": 1, "options": ("--hrf-model", "spm + derivative + dispersion")},
    "run1_t0_1": {"run": 1, "options": ("--microtime", "16,1")},
    "run2_hpf64": {"run": 2, "options": ("--high-pass", "0.015625")},
}
SPM_CONTRASTS = {"face": 1, "house": 2, "faceMinusHouse": 3}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    cache = {}

    def get(name):
        if name not in cache:
            case = CASES[name]
            out = tmp_path_factory.mktemp(name) / "out"
            options = [
                "--preset",
                "spm12",
                "--mask",
                str(mask_path(1)),
                "--contrast",
                "faceMinusHouse=face - house",
                "--f-contrast",
                "effectsOfInterest=face; house",
                "--skip-bids-validator",
                "--no-reports",
                "--work-dir",
                str(out.parent / "work"),
                *case.get("options", ()),
            ]
            if "run" in case:
                filters = out.parent / "filters.json"
                filters.write_text(json.dumps({"bold": {"run": case["run"]}}))
                options += ["--bids-filter-file", str(filters)]
            assert main([str(ROOT / "bids"), str(out), "participant", *options]) == 0
            cache[name] = out / "sub-pilot01" / "func"
        return cache[name]

    return get


def _map(folder: Path, contrast: str, stat: str) -> np.ndarray:
    path = folder / f"{PREFIX}_contrast-{contrast}_stat-{stat}_statmap.nii.gz"
    return np.asarray(nib.load(path).dataobj, dtype=float)


@pytest.mark.parametrize("name", CASES)
def test_preset_maps_equal_spm(outputs, name):
    folder = outputs(name)
    reference = load_model(name)
    mask = reference.image("mask") > 0
    written_mask = np.asarray(nib.load(folder / f"{PREFIX}_mask.nii.gz").dataobj) > 0
    assert np.array_equal(written_mask, mask)
    for contrast, number in SPM_CONTRASTS.items():
        error = np.abs(
            _map(folder, contrast, "t")[mask] - reference.image(f"spmT_{number:04d}")[mask]
        )
        assert np.mean(error <= 1e-3) >= 0.999 and error.max() <= 1e-2
        con = reference.image(f"con_{number:04d}")[mask]
        assert (
            np.abs(_map(folder, contrast, "effect")[mask] - con).max() <= 1e-5 * np.abs(con).max()
        )
    spm_f = reference.image("spmF_0004")[mask]
    f_error = np.abs(_map(folder, "effectsOfInterest", "F")[mask] - spm_f) / np.abs(spm_f).max()
    assert f_error.max() <= 1e-5


def test_preset_outputs_record_the_spm_model(outputs):
    folder = outputs("multisession_ar1")
    reference = load_model("multisession_ar1")
    assert not list(folder.glob("*_run-*"))  # one multi-session model: no run-level maps
    sidecar = json.loads((folder / f"{PREFIX}_contrast-face_stat-t_statmap.json").read_text())
    spm = sidecar["SPM12"]
    assert spm["EffectiveDegreesOfFreedom"] == pytest.approx(
        reference.export["xX"]["erdf"], abs=1e-6
    )
    assert np.allclose(spm["ReMLHyperparameters"], reference.export["xVi"]["h"], atol=1e-10)
    assert spm["ReMLPoolVoxels"] == 1150 and spm["Sessions"] == 3
    assert sidecar["DegreesOfFreedom"] == pytest.approx(426.0, abs=1e-6)
    assert sidecar["ContrastWeights"]["Sn(3) face*bf(1)"] == pytest.approx(1 / 3)
    design = np.loadtxt(folder / f"{PREFIX}_design.tsv", skiprows=1, delimiter="\t")
    assert design.shape == (453, 14)
    effective = json.loads((folder.parents[1] / "model-bidsglm_smdl.json").read_text())
    assert "spm12" in json.dumps(effective)
    methods = (folder.parents[1] / "logs" / "CITATION.md").read_text()
    assert "single general linear model" in methods and "ReML" in methods
    assert "fixed-effects model" not in methods


def test_preset_rejects_options_without_spm_meaning(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12", "--single-trial", "lss"]
    )
    assert code == 3
    assert "--single-trial: not supported with --preset spm12" in capsys.readouterr().err
    code = main(
        [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12", "--hrf-model", "fir"]
    )
    assert code == 3
    code = main([str(ROOT / "bids"), str(out), "participant", "--microtime", "16,8"])
    assert code == 3
    assert not out.exists()


def test_preset_explicit_mask_must_be_on_the_bold_grid(tmp_path, capsys):
    image = nib.load(mask_path(1))
    affine = image.affine.copy()
    affine[0, 3] += 2.0
    moved = tmp_path / "moved_mask.nii.gz"
    nib.Nifti1Image(np.asarray(image.dataobj), affine).to_filename(moved)
    out = tmp_path / "out"
    argv = [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12"]
    argv += ["--mask", str(moved), "--skip-bids-validator", "--no-reports"]
    assert main([*argv, "--work-dir", str(tmp_path / "work")]) != 0
    assert "must be on the BOLD grid" in capsys.readouterr().err
    assert not list(out.rglob("*_statmap.nii.gz"))


def test_preset_adds_confounds_as_mean_centred_session_regressors(tmp_path):
    out = tmp_path / "out"
    argv = [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12"]
    argv += ["--confounds", "motion6", "--skip-bids-validator", "--no-reports"]
    assert main([*argv, "--work-dir", str(tmp_path / "work")]) == 0
    folder = out / "sub-pilot01" / "func"
    design = pd.read_csv(folder / f"{PREFIX}_design.tsv", sep="\t")
    motion = [
        c for c in design.columns if c.startswith("Sn(2) trans_") or c.startswith("Sn(2) rot_")
    ]
    assert len(motion) == 6
    rows = design["Sn(2) constant"] == 1
    assert np.allclose(design.loc[rows, motion].mean(), 0.0, atol=1e-10)
    assert np.all(design.loc[~rows, motion] == 0)
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "multiple regressors" in methods


def test_preset_dry_run_writes_spm_design_from_the_events(tmp_path):
    out = tmp_path / "out"
    argv = [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12", "--dry-run"]
    assert main([*argv, "--skip-bids-validator", "--work-dir", str(tmp_path / "work")]) == 0
    design = pd.read_csv(out / "sub-pilot01" / "func" / f"{PREFIX}_design.tsv", sep="\t")
    reference = pd.read_csv(load_model("multisession_ar1").folder / "design_matrix.csv")
    assert sorted(design.columns) == sorted(reference.columns)
    difference = (design[reference.columns] - reference).abs().max()
    assert np.all(difference <= 1e-6 * reference.abs().max())
    assert not list(out.rglob("*_statmap.nii.gz"))


def test_preset_maps_are_unchanged_when_the_data_are_held_in_a_file(
    outputs, tmp_path, monkeypatch
):
    """Long runs' data are mapped from an unnamed file of the work folder: same maps to the
    bit as held in memory, and nothing left in the work folder."""
    import bids_glm.pipeline.chunked_series as chunked_series
    from bids_glm.runtime import spill

    held = []

    def spy(*args, **kwargs):
        held.append(spill.scratch_array(*args, **kwargs))
        return held[-1]

    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    monkeypatch.setattr(chunked_series, "scratch_array", spy)
    out, work = tmp_path / "out", tmp_path / "work"
    options = ["--preset", "spm12", "--mask", str(mask_path(1)), "--no-reports"]
    options += ["--contrast", "faceMinusHouse=face - house", "--skip-bids-validator"]
    options += ["--f-contrast", "effectsOfInterest=face; house", "--work-dir", str(work)]
    assert main([str(ROOT / "bids"), str(out), "participant", *options]) == 0
    assert len(held) == 1 and isinstance(held[0].base.base.obj, mmap.mmap)
    in_memory = outputs("multisession_ar1")
    for contrast in (*SPM_CONTRASTS, "effectsOfInterest"):
        for stat in ("t", "effect") if contrast != "effectsOfInterest" else ("F",):
            spilled = _map(out / "sub-pilot01" / "func", contrast, stat)
            np.testing.assert_array_equal(spilled, _map(in_memory, contrast, stat))
    assert not [path for path in work.rglob("*") if path.is_file()]
