"""The demo dataset generator: BIDS layout, image headers, tables, planted truth, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from bids_validator import BIDSValidator
from nilearn.glm.first_level import make_first_level_design_matrix

import bids_glm.cli.demo
from bids_glm.cli.demo import main
from bids_glm.demo.dataset import DEMO_SIZES, make_demo_dataset, planted_mask
from bids_glm.demo.signal import NoiseModel, drift_basis

SPACE = "MNI152NLin2009cAsym"
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def _prefix(subject: str, run: str, session: str | None = None) -> str:
    ses = f"_ses-{session}" if session else ""
    return f"sub-{subject}{ses}_task-faces_run-{run}"


def _func(root: Path, subject: str, session: str | None = None) -> Path:
    return root / f"sub-{subject}" / (f"ses-{session}" if session else "") / "func"


def _deriv(root: Path, subject: str, session: str | None = None) -> Path:
    return _func(root / "derivatives" / "fmriprep", subject, session)


def _read_tsv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A small demo: 2 subjects x 2 runs."""
    root = tmp_path_factory.mktemp("demo") / "bids"
    return root, make_demo_dataset(root, n_subjects=2, n_runs=2, seed=0)


def test_files_have_bids_names_and_are_valid(demo):
    root, truth = demo
    expected = {
        "dataset_description.json",
        "participants.tsv",
        "participants.json",
        "README",
        "CHANGES",
        "task-faces_bold.json",
        "task-faces_events.json",
        "code/demo_truth.json",
        "derivatives/fmriprep/dataset_description.json",
    }
    for subject in truth["subjects"]:
        for run in truth["runs"]:
            stem = _prefix(subject, run)
            func, deriv = f"sub-{subject}/func", f"derivatives/fmriprep/sub-{subject}/func"
            expected |= {f"{func}/{stem}_bold.nii.gz", f"{func}/{stem}_events.tsv"}
            for suffix in ("desc-preproc_bold", "desc-brain_mask"):
                expected |= {
                    f"{deriv}/{stem}_space-{SPACE}_{suffix}.{e}" for e in ("nii.gz", "json")
                }
            expected |= {f"{deriv}/{stem}_desc-confounds_timeseries.{e}" for e in ("tsv", "json")}
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert written == expected
    validator = BIDSValidator()
    assert not validator.is_bids("/sub-01/func/sub-01_task-faces_run-1_bld.nii.gz")
    for name in written - {"code/demo_truth.json"}:
        assert validator.is_bids(f"/{name}"), name

    raw = json.loads((root / "dataset_description.json").read_text())
    assert raw["BIDSVersion"] == "1.9.0" and raw["DatasetType"] == "raw"
    assert raw["License"] and raw["Authors"]
    deriv = json.loads((root / "derivatives/fmriprep/dataset_description.json").read_text())
    assert deriv["DatasetType"] == "derivative"
    assert deriv["GeneratedBy"][0]["Name"] == "fMRIPrep-like demo"
    assert deriv["SourceDatasets"]
    participants = _read_tsv(root / "participants.tsv")
    assert list(participants.columns) == ["participant_id", "age", "sex"]
    assert list(participants["participant_id"]) == ["sub-01", "sub-02"]
    assert set(participants["sex"]) <= {"F", "M"} and participants["age"].between(18, 40).all()


def test_truth_is_written_and_complete(demo):
    root, truth = demo
    assert json.loads((root / "code/demo_truth.json").read_text()) == truth
    assert truth["conditions"] == ["face", "house", "scrambled"]
    assert truth["null_conditions"] == ["scrambled"] and set(truth["planted"]) == {"face", "house"}
    assert (truth["subjects"], truth["runs"], truth["sessions"]) == (["01", "02"], ["1", "2"], [])
    assert (truth["seed"], truth["size"], truth["tr_s"], truth["task"]) == (
        0,
        "small",
        2.0,
        "faces",
    )
    assert truth["noise"] == json.loads(json.dumps(NoiseModel().__dict__))


def test_planted_masks_match_the_truth(demo):
    root, truth = demo
    brain = _load(
        _deriv(root, "01") / f"{_prefix('01', '1')}_space-{SPACE}_desc-brain_mask.nii.gz"
    )
    face, house = planted_mask(truth, "face"), planted_mask(truth, "house")
    for condition, blob in (("face", face), ("house", house)):
        planted = truth["planted"][condition]
        assert blob.shape == tuple(truth["shape"]) and blob.dtype == bool
        assert blob.sum() == planted["n_voxels"] == 123  # radius-3 digital sphere
        assert blob[tuple(planted["centre_ijk"])]
        assert np.all(brain[blob] == 1)
    assert not np.any(face & house)
    assert not planted_mask(truth, "scrambled").any()
    with pytest.raises(ValueError, match="not in the demo"):
        planted_mask(truth, "tools")


def _load(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_images_have_the_expected_grid_dtype_tr_and_affine(demo):
    root, truth = demo
    preset = DEMO_SIZES["small"]
    stem = _prefix("02", "2")
    bold = nib.load(_func(root, "02") / f"{stem}_bold.nii.gz")
    assert bold.shape == (*preset.shape, preset.n_volumes)
    assert bold.get_data_dtype() == np.int16
    assert bold.header.get_zooms() == (4.0, 4.0, 4.0, 2.0)
    assert bold.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(bold.affine, truth["affine"])
    np.testing.assert_allclose(bold.header.get_qform(), bold.header.get_sform())
    assert np.allclose(np.diag(bold.affine)[:3], 4.0)
    centre_mm = bold.affine @ np.r_[(np.array(preset.shape) - 1) / 2, 1]
    assert np.all(np.abs(centre_mm[:3]) < 20)  # origin near the grid's centre
    sidecar = json.loads((root / "task-faces_bold.json").read_text())
    assert sidecar["RepetitionTime"] == 2.0 and sidecar["TaskName"] == "faces"
    slice_times = np.array(sidecar["SliceTiming"])
    assert slice_times.size == preset.shape[2] and np.all(np.diff(slice_times) > 0)
    assert slice_times.max() < 2.0
    deriv = _deriv(root, "02")
    preproc = json.loads((deriv / f"{stem}_space-{SPACE}_desc-preproc_bold.json").read_text())
    assert preproc["RepetitionTime"] == 2.0 and preproc["SkullStripped"] is False

    mask_image = nib.load(deriv / f"{stem}_space-{SPACE}_desc-brain_mask.nii.gz")
    assert mask_image.get_data_dtype() == np.uint8 and mask_image.shape == preset.shape
    np.testing.assert_allclose(mask_image.affine, truth["affine"])
    brain = np.asanyarray(mask_image.dataobj).astype(bool)
    assert brain.sum() == truth["brain"]["n_voxels"]
    mean = np.asanyarray(bold.dataobj).mean(axis=-1)
    assert 780 < mean[brain].min() and mean[brain].max() < 1220
    assert 15 < mean[~brain].min() and mean[~brain].max() < 55
    np.testing.assert_array_equal(mean > 400, brain)  # an intensity threshold finds the brain


def test_raw_bold_is_a_hard_link_to_the_preprocessed_bold(demo):
    root, _ = demo
    stem = _prefix("01", "2")
    raw = _func(root, "01") / f"{stem}_bold.nii.gz"
    preproc = _deriv(root, "01") / f"{stem}_space-{SPACE}_desc-preproc_bold.nii.gz"
    assert raw.stat().st_ino == preproc.stat().st_ino or raw.read_bytes() == preproc.read_bytes()


def test_events_tables(demo):
    root, truth = demo
    run_duration_s = truth["n_volumes"] * truth["tr_s"]
    for subject in truth["subjects"]:
        for run in truth["runs"]:
            events = _read_tsv(_func(root, subject) / f"{_prefix(subject, run)}_events.tsv")
            assert list(events.columns[:3]) == ["onset", "duration", "trial_type"]
            counts = events["trial_type"].value_counts()
            assert set(counts.index) == set(truth["conditions"]) and counts.min() >= 10
            assert events["duration"].between(1.0, 3.0).all()
            ends = events["onset"] + events["duration"]
            assert np.all(events["onset"].to_numpy()[1:] >= ends.to_numpy()[:-1])
            assert events["onset"].min() > 0 and ends.max() < run_duration_s - 10
            assert events.loc[events["trial_type"] == "scrambled", "response_time"].isna().all()
            assert events.loc[events["trial_type"] != "scrambled", "response_time"].notna().all()


def test_confounds_look_like_fmriprep(demo):
    root, truth = demo
    stem = _prefix("01", "1")
    table = _read_tsv(_deriv(root, "01") / f"{stem}_desc-confounds_timeseries.tsv")
    derivative = [f"{m}_derivative1" for m in MOTION]
    first_row_na = {*derivative, "framewise_displacement", "dvars", "std_dvars"}
    required = {"global_signal", "csf", "white_matter", *MOTION, *first_row_na}
    compcor = [f"a_comp_cor_{k:02d}" for k in range(6)]
    assert required | set(compcor) <= set(table.columns)
    assert [c for c in table.columns if c.startswith("cosine")] == ["cosine00", "cosine01"]
    assert len(table) == truth["n_volumes"]
    has_na = table.isna()
    assert set(table.columns[has_na.any()]) == first_row_na
    assert has_na.iloc[0][list(first_row_na)].all() and not has_na.iloc[1:].any().any()
    np.testing.assert_allclose(
        table[derivative].iloc[1:], np.diff(table[list(MOTION)], axis=0), atol=1e-7
    )
    fd = np.abs(np.diff(table[list(MOTION)], axis=0)) @ np.array([1, 1, 1, 50, 50, 50])
    np.testing.assert_allclose(table["framewise_displacement"].iloc[1:], fd, atol=1e-6)
    assert (
        table["framewise_displacement"].median() < 0.5
        and table[list(MOTION[:3])].abs().max().max() < 5
    )
    components = table[compcor].to_numpy()
    np.testing.assert_allclose(components.T @ components, np.eye(6), atol=1e-6)
    assert np.all(table["global_signal"].between(800, 1200))

    sidecar = json.loads(
        (_deriv(root, "01") / f"{stem}_desc-confounds_timeseries.json").read_text()
    )
    explained = [sidecar[c]["VarianceExplained"] for c in compcor]
    assert all(sidecar[c]["Method"] == "aCompCor" and sidecar[c]["Retained"] for c in compcor)
    assert all(sidecar[c]["Mask"] == "combined" for c in compcor)
    assert np.all(np.diff(explained) <= 0)
    np.testing.assert_allclose(
        [sidecar[c]["CumulativeVarianceExplained"] for c in compcor], np.cumsum(explained)
    )


def _percent_signal(root: Path, truth: dict, subject: str, run: str):
    """Brain time series in percent of their mean, the nilearn design, and the brain mask."""
    stem = _prefix(subject, run)
    data = _load(_func(root, subject) / f"{stem}_bold.nii.gz")
    brain = _load(_deriv(root, subject) / f"{stem}_space-{SPACE}_desc-brain_mask.nii.gz") > 0
    series = data[brain].T.astype(np.float64)
    percent = 100.0 * (series / series.mean(axis=0) - 1.0)
    events = _read_tsv(_func(root, subject) / f"{stem}_events.tsv")
    events = events[["onset", "duration", "trial_type"]]
    frame_times = np.arange(truth["n_volumes"]) * truth["tr_s"]
    design = make_first_level_design_matrix(
        frame_times, events, hrf_model="glover", drift_model="cosine", high_pass=0.01
    )
    return percent, design, brain


def test_planted_signal_is_recovered_by_an_independent_glm(demo):
    root, truth = demo
    percent, design, brain = _percent_signal(root, truth, "02", "1")
    columns = list(design.columns)
    pinv = np.linalg.pinv(design.to_numpy())
    betas = pinv @ percent
    residuals = percent - design.to_numpy() @ betas
    variance = np.sum(residuals**2, axis=0) / (len(design) - np.linalg.matrix_rank(design))
    t_values = betas / np.sqrt(np.outer(np.diag(pinv @ pinv.T), variance))
    planted = planted_mask(truth, "face")[brain] | planted_mask(truth, "house")[brain]
    for condition in truth["conditions"]:
        beta, t = betas[columns.index(condition)], t_values[columns.index(condition)]
        assert abs(beta[~planted].mean()) < 0.02
        assert np.mean(t[~planted] > 3.1) < 0.01  # OLS t, inflated a little by AR(1)
        for other, blob_info in truth["planted"].items():
            blob = planted_mask(truth, other)[brain]
            expected = blob_info["amplitude_percent"] if other == condition else 0.0
            assert np.mean(beta[blob]) == pytest.approx(expected, abs=0.1)
            if other == condition:
                assert np.mean(t[blob] > 3.1) >= 0.95
    noise_std = residuals[:, ~planted].std(axis=0)  # percent of the mean = of baseline
    assert np.median(noise_std) == pytest.approx(truth["noise"]["noise_std_percent"], rel=0.1)
    lag1 = np.sum(residuals[1:] * residuals[:-1], axis=0) / np.sum(residuals**2, axis=0)
    assert 0.2 < np.median(lag1) < 0.35  # planted rho 0.2-0.4, biased low by the fit


def test_drift_is_removed_by_a_001_hz_cosine_high_pass():
    n_volumes, tr_s = DEMO_SIZES["small"].n_volumes, 2.0
    drifts = drift_basis(n_volumes, tr_s, NoiseModel())
    assert drifts.shape[1] >= 2
    design = make_first_level_design_matrix(
        np.arange(n_volumes) * tr_s, drift_model="cosine", high_pass=0.01
    ).to_numpy()
    fitted = design @ np.linalg.lstsq(design, drifts, rcond=None)[0]
    np.testing.assert_allclose(fitted, drifts, atol=1e-10)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    roots = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_demo_dataset(roots[name], n_subjects=1, n_runs=1, seed=seed)
    stem = _prefix("01", "1")
    names = (
        f"sub-01/func/{stem}_bold.nii.gz",
        f"sub-01/func/{stem}_events.tsv",
        f"derivatives/fmriprep/sub-01/func/{stem}_desc-confounds_timeseries.tsv",
        "participants.tsv",
    )
    for name in names:
        assert (roots["a"] / name).read_bytes() == (roots["b"] / name).read_bytes(), name
    assert (roots["a"] / names[0]).read_bytes() != (roots["c"] / names[0]).read_bytes()
    assert (roots["a"] / names[1]).read_bytes() != (roots["c"] / names[1]).read_bytes()


def test_sessions_add_a_level_and_an_entity(tmp_path):
    truth = make_demo_dataset(tmp_path / "bids", n_subjects=1, n_runs=1, sessions=["pre", "post"])
    assert truth["sessions"] == ["pre", "post"]
    for session in ("pre", "post"):
        stem = _prefix("01", "1", session)
        assert (_func(tmp_path / "bids", "01", session) / f"{stem}_bold.nii.gz").is_file()
        deriv = _deriv(tmp_path / "bids", "01", session)
        assert (deriv / f"{stem}_desc-confounds_timeseries.tsv").is_file()
        assert BIDSValidator().is_bids(f"/sub-01/ses-{session}/func/{stem}_events.tsv")


def test_existing_directory_is_reused_only_for_the_same_demo(tmp_path):
    root = tmp_path / "bids"
    truth = make_demo_dataset(root, n_subjects=1, n_runs=1, seed=5)
    bold = _func(root, "01") / f"{_prefix('01', '1')}_bold.nii.gz"
    written_ns = bold.stat().st_mtime_ns
    assert make_demo_dataset(root, n_subjects=1, n_runs=1, seed=5) == truth
    assert bold.stat().st_mtime_ns == written_ns
    with pytest.raises(FileExistsError, match="other parameters"):
        make_demo_dataset(root, n_subjects=1, n_runs=1, seed=6)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        make_demo_dataset(foreign, n_subjects=1, n_runs=1)
    with pytest.raises(ValueError, match="size must be one of"):
        make_demo_dataset(tmp_path / "x", size="huge")


def test_main_generates_then_runs_the_participant_level(tmp_path, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(bids_glm.cli.demo, "cli_main", lambda argv: calls.append(argv) or 0)
    args = [str(tmp_path), "--subjects", "1", "--runs", "1", "--seed", "2"]
    assert main([*args, "--", "--smoothing-fwhm", "6"]) == 0
    assert calls == [
        [
            str(tmp_path / "bids"),
            str(tmp_path / "output"),
            "participant",
            "--work-dir",
            str(tmp_path / "work"),
            "--smoothing-fwhm",
            "6",
        ]
    ]
    assert str(tmp_path / "output") in capsys.readouterr().out
    truth = json.loads((tmp_path / "bids" / "code" / "demo_truth.json").read_text())
    assert (truth["seed"], truth["subjects"], truth["runs"]) == (2, ["01"], ["1"])

    assert main([*args, "--no-run"]) == 0  # reuses the same demo, runs nothing
    assert len(calls) == 1
    assert main([str(tmp_path), "--subjects", "2", "--no-run"]) == 2
    assert "other parameters" in capsys.readouterr().err
