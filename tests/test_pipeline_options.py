"""Participant-level options end to end: dry run, dummy scans, censoring, F contrasts,
model maps, masks, design diagnostics."""

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
from bids_glm.design.matrix import frame_times, make_design_matrix

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def demo_bids(tmp_path_factory) -> Path:
    """One demo subject with two runs (never modified by the tests)."""
    root = tmp_path_factory.mktemp("demo1")
    make_demo_dataset(root / "bids", n_subjects=1, n_runs=2)
    return root / "bids"


def run(bids: Path, out: Path, *options: str) -> int:
    return main(
        [str(bids), str(out), "participant", "--work-dir", str(out.parent / "work"), *options]
    )


def func(out: Path) -> Path:
    return out / "sub-01" / "func"


def load(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def test_dry_run_writes_designs_and_fits_nothing(demo_bids, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(demo_bids, out, "--dry-run", "--contrast", "fvh=face - house") == 0
    written = sorted(p.name for p in func(out).iterdir())
    assert written == [
        f"sub-01_task-faces_run-{r}_space-{SPACE}_design.{ext}"
        for r in (1, 2)
        for ext in ("json", "tsv")
    ]
    printed = capsys.readouterr().out
    assert "sub-01 task-faces run-1: 120 volumes, TR 2.0 s, 0 dummy, 0 censored" in printed
    assert "contrast fvh (t): face - house" in printed
    assert run(demo_bids, tmp_path / "out2", "--dry-run", "--contrast", "x=[0.5, -1]") == 0
    assert "contrast x (t): [0.5, -1], i.e. 0.5*face - house" in capsys.readouterr().out
    sidecar = json.loads((func(out) / written[0]).read_text())
    assert sidecar["FrameTimes"][:2] == [0.0, 2.0]
    assert sidecar["Columns"][:3] == ["face", "house", "scrambled"]


def test_dummy_scans_drop_volumes_and_shift_onsets(demo_bids, tmp_path):
    out = tmp_path / "out"
    assert run(demo_bids, out, "--dummy-scans", "5", "--dry-run") == 0
    design = pd.read_csv(next(func(out).glob("*run-1_*_design.tsv")), sep="\t")
    events = pd.read_csv(
        demo_bids / "sub-01" / "func" / "sub-01_task-faces_run-1_events.tsv", sep="\t"
    )
    events = events.assign(onset=events["onset"] - 10.0)[["onset", "duration", "trial_type"]]
    expected = make_design_matrix(frame_times(115, 2.0), events)
    assert len(design) == 115
    np.testing.assert_allclose(design.to_numpy(), expected.to_numpy(), atol=1e-10)
    sidecar = json.loads(next(func(out).glob("*run-1_*_design.json")).read_text())
    assert sidecar["DummyScans"] == 5


def test_dummy_scans_equal_a_dataset_with_those_volumes_removed(demo_bids, tmp_path):
    """Dropping 5 volumes with the option == physically removing them and shifting onsets."""
    trimmed = tmp_path / "trimmed"
    shutil.copytree(demo_bids, trimmed)
    for bold in (trimmed / "derivatives").rglob("*desc-preproc_bold.nii.gz"):
        image = nib.load(bold)
        data = np.asanyarray(image.dataobj)[..., 5:]
        bold.unlink()
        nib.Nifti1Image(data, image.affine, image.header).to_filename(bold)
    for events in trimmed.rglob("*_events.tsv"):
        table = pd.read_csv(events, sep="\t")
        table["onset"] -= 10.0
        table.to_csv(events, sep="\t", index=False, na_rep="n/a")
    assert run(demo_bids, tmp_path / "a" / "out", "--dummy-scans", "5") == 0
    assert run(trimmed, tmp_path / "b" / "out", "--skip-bids-validator") == 0
    name = f"sub-01_task-faces_space-{SPACE}_contrast-face_stat-z_statmap.nii.gz"
    ours = load(func(tmp_path / "a" / "out") / name)
    reference = load(func(tmp_path / "b" / "out") / name)
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_f_contrast_equals_nilearn_and_model_maps_are_written(demo_bids, tmp_path):
    from nilearn.glm.first_level import FirstLevelModel

    out = tmp_path / "out"
    code = run(
        demo_bids,
        out,
        "--f-contrast",
        "effects=face; house",
        "--model-maps",
        "--noise-model",
        "ols",
        "--participant-label",
        "01",
    )
    assert code == 0
    stem = f"sub-01_task-faces_run-1_space-{SPACE}"
    for stat in ("F", "z", "p"):
        assert (func(out) / f"{stem}_contrast-effects_stat-{stat}_statmap.nii.gz").exists()
    assert not (func(out) / f"{stem}_contrast-effects_stat-effect_statmap.nii.gz").exists()
    sidecar = json.loads((func(out) / f"{stem}_contrast-effects_stat-F_statmap.json").read_text())
    assert sidecar["ContrastWeights"] == [{"face": 1.0}, {"house": 1.0}]
    assert sidecar["NumeratorDegreesOfFreedom"] == 2
    mask_img = nib.load(next(func(out).glob("*_mask.nii.gz")))
    mask = load(mask_img.get_filename()) > 0
    design = pd.read_csv(func(out) / f"{stem}_design.tsv", sep="\t")
    bold = next((demo_bids / "derivatives").rglob("*run-1_*desc-preproc_bold.nii.gz"))
    model = FirstLevelModel(mask_img=mask_img, noise_model="ols", signal_scaling=0)
    model.fit(bold, design_matrices=[design])
    weights = np.zeros((2, design.shape[1]))
    weights[0, 0] = weights[1, 1] = 1.0
    expected = model.compute_contrast(weights, stat_type="F", output_type="all")
    f_ours = load(func(out) / f"{stem}_contrast-effects_stat-F_statmap.nii.gz")[mask]
    np.testing.assert_allclose(f_ours, expected["stat"].get_fdata()[mask], rtol=1e-4, atol=1e-5)
    z_ours = load(func(out) / f"{stem}_contrast-effects_stat-z_statmap.nii.gz")[mask]
    assert np.max(np.abs(z_ours - expected["z_score"].get_fdata()[mask])) < 1e-3
    r_squared = load(func(out) / f"{stem}_stat-rSquared_statmap.nii.gz")[mask]
    assert np.all((r_squared >= 0) & (r_squared <= 1))
    residual_sd = load(func(out) / f"{stem}_stat-residualSd_statmap.nii.gz")[mask]
    assert np.median(residual_sd) == pytest.approx(1.0, rel=0.15)  # demo noise: 1 % of baseline


def test_collinear_conditions_are_named_in_a_warning(tmp_path, capsys):
    from conftest import make_tiny_dataset

    bids = make_tiny_dataset(tmp_path / "bids")
    events = next(bids.rglob("*_events.tsv"))
    events.write_text("onset\tduration\ttrial_type\n2\t4\ta\n2\t4\tb\n30\t4\ta\n30\t4\tb\n")
    assert run(bids, tmp_path / "out", "--dry-run") == 0
    log = capsys.readouterr().err
    assert "design is rank deficient" in log
    assert "collinear columns: a, b" in log


def test_missing_brain_mask_falls_back_to_an_epi_mask(tmp_path, capsys):
    from conftest import make_tiny_dataset

    bids = make_tiny_dataset(tmp_path / "bids", shape=(12, 12, 10), n_volumes=40)
    for mask in bids.rglob("*desc-brain_mask.nii.gz"):
        mask.unlink()
    assert run(bids, tmp_path / "out") == 0
    assert "computing an EPI mask" in capsys.readouterr().err
    assert load(next(func(tmp_path / "out").glob("*_mask.nii.gz"))).sum() > 0


def test_user_mask_on_another_grid_is_resampled(demo_bids, tmp_path, capsys):
    brain = next((demo_bids / "derivatives").rglob("*run-1_*desc-brain_mask.nii.gz"))
    image = nib.load(brain)
    coarse = np.asanyarray(image.dataobj)[::2, ::2, ::2]
    affine = image.affine.copy()
    affine[:3, :3] *= 2
    user_mask = tmp_path / "coarse_mask.nii.gz"
    nib.Nifti1Image(coarse.astype(np.uint8), affine).to_filename(user_mask)
    assert run(demo_bids, tmp_path / "out2", "--mask", str(user_mask)) == 0
    assert "resampled (nearest neighbour)" in capsys.readouterr().err
    written = load(next(func(tmp_path / "out2").glob("*_mask.nii.gz"))) > 0
    assert written.shape == image.shape
    assert abs(int(written.sum()) - int(np.asanyarray(image.dataobj).sum())) < 0.1 * written.sum()


def test_confound_strategy_adds_columns_and_censors_volumes(demo_bids, tmp_path):
    out = tmp_path / "out"
    confounds_file = next(
        (demo_bids / "derivatives").rglob("*run-1_desc-confounds_timeseries.tsv")
    )
    fd = pd.read_csv(confounds_file, sep="\t", na_values="n/a")["framewise_displacement"]
    threshold = float(np.nanpercentile(fd, 90))
    code = run(
        demo_bids,
        out,
        "--participant-label",
        "01",
        "--confounds",
        "motion6",
        f"scrub:FD={threshold}",
        "--dummy-scans",
        "2",
    )
    assert code == 0
    design = pd.read_csv(next(func(out).glob("*run-1_*_design.tsv")), sep="\t")
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    assert list(design.columns[3:9]) == motion
    assert len(design) == 118  # built on the full timeline after the dummy scans
    sidecar = json.loads(next(func(out).glob("*run-1_*_design.json")).read_text())
    expected = [int(i) for i in np.flatnonzero(fd.to_numpy()[2:] > threshold) + 2]
    assert sidecar["CensoredVolumes"] == expected and expected
    assert sidecar["Confounds"]["motion6"] == motion
    t_sidecar = json.loads(
        next(func(out).glob("*run-1_*contrast-face_stat-t_statmap.json")).read_text()
    )
    assert t_sidecar["DegreesOfFreedom"] == 118 - len(expected) - design.shape[1]


def test_sidecar_weights_on_the_design_columns_reproduce_each_effect_map(demo_bids, tmp_path):
    out = tmp_path / "out"
    assert run(demo_bids, out, "--model-maps", "--contrast", "fvh=face - 0.5*house") == 0
    design = pd.read_csv(next(func(out).glob("*run-1_*_design.tsv")), sep="\t")
    betas = {}
    for path in func(out).glob("*run-1_*_stat-beta_statmap.nii.gz"):
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        betas[sidecar["Column"]] = load(path).astype(np.float64)
    assert sorted(betas) == sorted(design.columns)
    effects = sorted(func(out).glob("*run-1_*_stat-effect_statmap.nii.gz"))
    assert len(effects) == 4  # face, house, scrambled, fvh
    for path in effects:
        sidecar = json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())
        rebuilt = sum(
            weight * betas[column] for column, weight in sidecar["ContrastWeights"].items()
        )
        np.testing.assert_allclose(load(path), rebuilt, rtol=1e-5, atol=1e-6)


def test_effective_model_is_a_bids_stats_model_of_what_ran(demo_bids, tmp_path):
    from bids import BIDSLayout
    from bids.modeling import BIDSStatsModelsGraph

    out = tmp_path / "out"
    options = (
        "--contrast",
        "fvh=face - house",
        "--f-contrast",
        "eff=face; house",
        "--confounds",
        "motion6",
        "--hrf-model",
        "spm + derivative",
    )
    assert run(demo_bids, out, *options) == 0
    model = json.loads((out / "model-bidsglm_smdl.json").read_text())
    run_node = model["Nodes"][0]
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    assert run_node["Model"]["X"] == ["face", "house", "scrambled", *motion, 1]
    assert run_node["Model"]["HRF"] == {
        "Model": "SPM",
        "TimeDerivative": True,
        "Variables": ["face", "house", "scrambled"],
    }
    assert run_node["Model"]["Options"]["HighPassFilterCutoffHz"] == 0.01
    assert run_node["Contrasts"] == [
        {"Name": "fvh", "ConditionList": ["face", "house"], "Weights": [1.0, -1.0], "Test": "t"},
        {
            "Name": "eff",
            "ConditionList": ["face", "house"],
            "Weights": [[1.0, 0.0], [0.0, 1.0]],
            "Test": "F",
        },
    ]
    layout = BIDSLayout(demo_bids, validate=False)
    graph = BIDSStatsModelsGraph(layout, model)  # pybids accepts the document's structure
    assert list(graph.nodes) == ["run", "subject", "dataset"]


def test_fdr_without_discoveries_writes_an_empty_cluster_table(tmp_path):
    """FDR control that no voxel survives (a null contrast) is a result, not a failure."""
    make_demo_dataset(tmp_path / "bids", n_subjects=1, n_runs=2, seed=3)
    out = tmp_path / "out"
    options = ("--height-control", "fdr", "--alpha", "0.05", "--smoothing-fwhm", "6")
    assert run(tmp_path / "bids", out, *options, "--no-pdf") == 0
    sidecars = {
        path.name.split("_desc-")[1].removesuffix("_clusters.json"): json.loads(path.read_text())
        for path in func(out).glob("*_clusters.json")
    }
    empty = [label for label, sidecar in sidecars.items() if sidecar["ZThreshold"] is None]
    assert empty, "the seed was chosen so that the null contrast has no FDR discovery"
    for label in empty:
        name = f"sub-01_task-faces_space-{SPACE}_desc-{label}_clusters.tsv"
        table = pd.read_csv(func(out) / name, sep="\t")
        assert len(table) == 0
    assert sidecars["face"]["ZThreshold"] > 3  # the planted effect is found
    assert (out / "sub-01.html").is_file()
