"""Group level: OLS over subjects against scipy/numpy, and end to end on the demo data.

The demo plants the same ``face`` and ``house`` amplitudes (3 % signal change) in every subject,
so the between-subject spread of the subject effects is first-level estimation noise only.
With 3 subjects (dof 2) a voxel needs t > 19 for z > 3, which only about a third of the blob
reaches; with 6 subjects x 1 run (dof 5, t > 5.5 for z > 3) most blob voxels pass, which is
what is checked. The null condition ``scrambled`` has no effect anywhere; without smoothing its
voxels are independent, so about 1 % of them exceed z = 2.33 (p < 0.01) and 0.13 % exceed z = 3:
checked with margin."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset, planted_mask
from bids_glm.errors import InputError
from bids_glm.glm.group import (
    contrast_label,
    design_from_covariates,
    fit_group,
    precision_weighted_mean,
)
from bids_glm.glm.stats import t_to_p_z
from bids_glm.image.mask_rule import MaskRule
from bids_glm.pipeline.group import GroupOptions, run_group_level

N_SUBJECTS = 6
SPACE = "MNI152NLin2009cAsym"


def test_one_sample_equals_scipy_ttest():
    rng = np.random.default_rng(0)
    effects = rng.normal(0.4, 1.0, size=(7, 300))
    (result,) = fit_group(np.ones((7, 1)), effects, np.array([1.0]))
    reference = stats.ttest_1samp(effects, 0.0, axis=0, alternative="greater")
    np.testing.assert_allclose(result.t, reference.statistic, rtol=1e-10)
    np.testing.assert_allclose(result.p, reference.pvalue, rtol=1e-6)
    np.testing.assert_allclose(result.z, stats.norm.isf(reference.pvalue), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(result.effect, effects.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.variance, effects.var(axis=0, ddof=1) / 7, rtol=1e-12)
    assert np.all(result.dof == 6) and result.valid.all()


def test_covariate_design_columns():
    covariates = pd.DataFrame(
        {"age": ["30", "20", "40", "30"], "group": ["b", "a", "c", "a"]}, index=list("1234")
    )
    design = design_from_covariates(list("1234"), covariates)
    assert design.columns == ("intercept", "age", "group_b", "group_c")
    np.testing.assert_array_equal(design.matrix[:, 1], [0.0, -10.0, 10.0, 0.0])
    np.testing.assert_array_equal(design.matrix[:, 2:], [[1, 0], [0, 0], [0, 1], [0, 0]])
    table = design.table()
    assert list(table["participant_id"]) == ["sub-1", "sub-2", "sub-3", "sub-4"]
    # numbers declared categorical are dummy-coded
    coded = design_from_covariates(list("1234"), covariates[["age"]], categorical={"age"})
    assert coded.columns == ("intercept", "age_30", "age_40")


def test_covariates_equal_numpy_lstsq():
    rng = np.random.default_rng(1)
    n = 12
    covariates = pd.DataFrame(
        {"age": rng.uniform(20, 60, n).round(1).astype(str), "sex": rng.choice(["F", "M"], n)},
        index=[f"{i:02d}" for i in range(n)],
    )
    design = design_from_covariates(list(covariates.index), covariates)
    effects = rng.normal(size=(n, 50)) + design.matrix @ rng.normal(size=(3, 50))
    results = fit_group(design.matrix, effects, np.eye(3))
    beta, rss, rank, _ = np.linalg.lstsq(design.matrix, effects, rcond=None)
    dof = n - rank
    unscaled = np.diag(np.linalg.inv(design.matrix.T @ design.matrix))
    for column, result in enumerate(results):
        t = beta[column] / np.sqrt(unscaled[column] * rss / dof)
        np.testing.assert_allclose(result.effect, beta[column], rtol=1e-9)
        np.testing.assert_allclose(result.t, t, rtol=1e-9)
        np.testing.assert_allclose(result.p, stats.t.sf(t, dof), rtol=1e-6)
        assert np.all(result.dof == dof)


def test_two_sample_equals_scipy_ttest_ind():
    rng = np.random.default_rng(2)
    groups = np.array(["ctl"] * 5 + ["pat"] * 6)
    labels = [f"{i:02d}" for i in range(11)]
    design = design_from_covariates(labels, pd.DataFrame({"dx": groups}, index=labels))
    effects = rng.normal(size=(11, 40)) + 0.8 * (groups == "pat")[:, None]
    mean_ctl, difference = fit_group(design.matrix, effects, np.eye(2))
    reference = stats.ttest_ind(effects[groups == "pat"], effects[groups == "ctl"], axis=0)
    np.testing.assert_allclose(difference.t, reference.statistic, rtol=1e-9)
    np.testing.assert_allclose(mean_ctl.effect, effects[groups == "ctl"].mean(axis=0), rtol=1e-9)
    assert contrast_label("face", "dx_pat") == "faceByDxPat"


def test_partial_coverage_fits_the_subjects_present():
    rng = np.random.default_rng(3)
    effects = rng.normal(1.0, 1.0, size=(5, 6))
    present = np.ones((5, 6), dtype=bool)
    present[4, :3] = False  # subject 4 lacks voxels 0-2
    present[1:, 5] = False  # only subject 0 covers voxel 5: not testable
    (result,) = fit_group(np.ones((5, 1)), effects, np.array([1.0]), present)
    partial = stats.ttest_1samp(effects[:4, :3], 0.0, axis=0)
    full = stats.ttest_1samp(effects[:, 3:5], 0.0, axis=0)
    np.testing.assert_allclose(result.t[:3], partial.statistic, rtol=1e-10)
    np.testing.assert_allclose(result.t[3:5], full.statistic, rtol=1e-10)
    np.testing.assert_array_equal(result.dof, [3, 3, 3, 4, 4, 0])
    assert not result.valid[5] and result.t[5] == 0 and result.p[5] == 1


def test_design_errors_are_precise():
    labels = ["01", "02", "03"]
    with pytest.raises(ValueError, match=r"'age'.*differ.*all 3 have 30"):
        design_from_covariates(labels, pd.DataFrame({"age": ["30"] * 3}, index=labels))
    with pytest.raises(ValueError, match=r"'sex'.*at least 2 levels.*\['M'\]"):
        design_from_covariates(labels, pd.DataFrame({"sex": ["M"] * 3}, index=labels))
    with pytest.raises(ValueError, match=r"'age'.*missing value.*'02'"):
        design_from_covariates(labels, pd.DataFrame({"age": ["1", None, "3"]}, index=labels))
    with pytest.raises(ValueError, match=r"no row for participants \['03'\]"):
        design_from_covariates(labels, pd.DataFrame({"age": ["1", "2"]}, index=labels[:2]))
    with pytest.raises(ValueError, match="weights with 1 columns"):
        fit_group(np.ones((3, 1)), np.zeros((3, 4)), np.ones((1, 2)))


def test_precision_weighted_mean_closed_form():
    effect, variance = precision_weighted_mean(np.array([[1.0], [4.0]]), np.array([[1.0], [2.0]]))
    np.testing.assert_allclose(variance, [2.0 / 3.0])
    np.testing.assert_allclose(effect, [(1.0 + 4.0 / 2.0) * 2.0 / 3.0])


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """Demo with 4 subjects x 1 run, analysed at the participant level once."""
    root = tmp_path_factory.mktemp("group")
    bids = root / "bids"
    truth = make_demo_dataset(bids, n_subjects=N_SUBJECTS, n_runs=1)
    code = main([str(bids), str(root / "out"), "participant", "--work-dir", str(root / "work")])
    assert code == 0
    return {"root": root, "bids": bids, "out": root / "out", "truth": truth}


def _group_map(folder: Path, label: str, stat: str) -> nib.Nifti1Image:
    return nib.load(
        folder / f"task-faces_space-{SPACE}_contrast-{label}_stat-{stat}_statmap.nii.gz"
    )


def test_demo_group_one_sample(demo):
    group = demo["root"] / "group-default"
    written = run_group_level(GroupOptions(demo["out"], group, demo["bids"]))
    assert len(written) == 3 * 5  # face, house, scrambled x effect, variance, t, z, p
    mask = nib.load(group / f"task-faces_space-{SPACE}_mask.nii.gz").get_fdata() > 0
    subjects = [f"{i:02d}" for i in range(1, N_SUBJECTS + 1)]
    func = [demo["out"] / f"sub-{s}" / "func" for s in subjects]
    effects = np.array(
        [
            nib.load(
                f / f"sub-{s}_task-faces_space-{SPACE}_contrast-face_stat-effect_statmap.nii.gz"
            ).get_fdata()[mask]
            for f, s in zip(func, subjects, strict=True)
        ]
    )
    reference = stats.ttest_1samp(effects, 0.0, axis=0)
    t = _group_map(group, "face", "t").get_fdata()[mask]
    np.testing.assert_allclose(t, reference.statistic, rtol=1e-6)
    _, z_reference = t_to_p_z(reference.statistic, N_SUBJECTS - 1)
    np.testing.assert_allclose(
        _group_map(group, "face", "z").get_fdata()[mask], z_reference, rtol=1e-6, atol=1e-6
    )

    face = planted_mask(demo["truth"], "face")
    z_face = _group_map(group, "face", "z").get_fdata()
    assert np.mean(z_face[face] > 3.0) > 0.8
    z_null = _group_map(group, "scrambled", "z").get_fdata()[mask]
    assert np.mean(z_null > 2.33) < 0.02
    assert np.mean(z_null > 3.0) < 0.005

    sidecar = json.loads(
        (group / f"task-faces_space-{SPACE}_contrast-face_stat-t_statmap.json").read_text()
    )
    assert sidecar["Test"] == "t" and sidecar["DegreesOfFreedom"] == N_SUBJECTS - 1
    assert sidecar["Subjects"] == [f"sub-{s}" for s in subjects]
    assert sidecar["DesignMatrix"] == {"intercept": [1.0] * N_SUBJECTS}
    assert sidecar["ContrastName"] == "face" and sidecar["Covariates"] == []
    design = pd.read_csv(group / f"task-faces_space-{SPACE}_design.tsv", sep="\t")
    assert list(design.columns) == ["participant_id", "intercept"]


def test_demo_missing_contrast_and_na_covariate(demo, tmp_path, caplog):
    outputs = tmp_path / "participants"
    shutil.copytree(demo["out"], outputs, ignore=shutil.ignore_patterns("*_run-*", "logs"))
    for path in (outputs / "sub-02" / "func").glob("*_contrast-house_*"):
        path.unlink()
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text(
        "participant_id\tage\nsub-01\t30\nsub-02\t41\nsub-03\t25\nsub-04\tn/a\n"
    )
    group = tmp_path / "group"
    with caplog.at_level(logging.WARNING, logger="bids_glm"):
        written = run_group_level(GroupOptions(outputs, group, bids, covariates=("age",)))
    assert "['sub-04', 'sub-05', 'sub-06'] left out: a covariate (age) is n/a" in caplog.text
    assert "['sub-02'] lack this contrast and are left out" in caplog.text
    # house: 2 subjects for 2 columns (intercept, age) -> no dof: skipped with a warning
    assert "contrast-house: 2 usable participants for 2 design columns" in caplog.text
    names = {path.name for path in written}
    assert f"task-faces_space-{SPACE}_contrast-faceByAge_stat-t_statmap.nii.gz" in names
    assert not any("contrast-house" in name for name in names)
    sidecar = json.loads(
        (group / f"task-faces_space-{SPACE}_contrast-faceByAge_stat-t_statmap.json").read_text()
    )
    assert sidecar["Subjects"] == ["sub-01", "sub-02", "sub-03"]
    assert sidecar["DesignMatrix"]["age"] == [-2.0, 9.0, -7.0]
    assert sidecar["DegreesOfFreedom"] == 1


def test_demo_input_errors(demo, tmp_path):
    with pytest.raises(InputError, match="no participant fixed-effects t-contrast maps"):
        run_group_level(GroupOptions(tmp_path, tmp_path / "g", demo["bids"]))
    with pytest.raises(InputError, match=r"participants\.tsv: no column \['weight'\]"):
        run_group_level(
            GroupOptions(demo["out"], tmp_path / "g", demo["bids"], covariates=("weight",))
        )
    constant = tmp_path / "bids"
    constant.mkdir()
    rows = "".join(f"sub-{i:02d}\tM\n" for i in range(1, N_SUBJECTS + 1))
    (constant / "participants.tsv").write_text("participant_id\tsex\n" + rows)
    with pytest.raises(InputError, match=r"task-faces.*'sex'.*at least 2 levels.*\['M'\]"):
        run_group_level(GroupOptions(demo["out"], tmp_path / "g", constant, covariates=("sex",)))
    assert not (tmp_path / "g").exists()  # nothing written before the error
    with pytest.raises(InputError, match="no group map could be written"):
        run_group_level(
            GroupOptions(demo["out"], tmp_path / "g", demo["bids"], participant_labels=("01",))
        )


def test_demo_fraction_mask_and_sessions(demo, tmp_path):
    """A subject's smaller mask: ``fraction`` keeps the voxels, fitted without that subject;
    a subject with two sessions contributes their precision-weighted combination."""
    outputs = tmp_path / "participants"
    shutil.copytree(demo["out"], outputs, ignore=shutil.ignore_patterns("*_run-*", "logs"))
    mask_path = outputs / "sub-01" / "func" / f"sub-01_task-faces_space-{SPACE}_mask.nii.gz"
    image = nib.load(mask_path)
    reduced = np.asarray(image.dataobj).copy()
    reduced[:, :, 20:] = 0
    nib.Nifti1Image(reduced, image.affine).to_filename(mask_path)
    # sub-02 gets a second session: a copy of its maps with a doubled effect
    func = outputs / "sub-02" / "func"
    for session in ("a", "b"):
        target = outputs / "sub-02" / f"ses-{session}" / "func"
        target.mkdir(parents=True)
        for path in func.iterdir():
            name = path.name.replace("sub-02_", f"sub-02_ses-{session}_")
            shutil.copy(path, target / name)
    shutil.rmtree(func)
    effect_b = (
        func.parent
        / "ses-b"
        / "func"
        / (f"sub-02_ses-b_task-faces_space-{SPACE}_contrast-face_stat-effect_statmap.nii.gz")
    )
    doubled = nib.load(effect_b)
    nib.Nifti1Image(2 * doubled.get_fdata(), doubled.affine).to_filename(effect_b)

    group = tmp_path / "group"
    run_group_level(
        GroupOptions(outputs, group, demo["bids"], mask_rule=MaskRule("fraction", 0.5))
    )
    mask = nib.load(group / f"task-faces_space-{SPACE}_mask.nii.gz").get_fdata() > 0
    assert mask[:, :, 20:].any()
    effects = []
    for i in range(1, N_SUBJECTS + 1):
        folder = demo["out"] / f"sub-{i:02d}" / "func"
        name = f"sub-{i:02d}_task-faces_space-{SPACE}_contrast-face_stat-effect_statmap.nii.gz"
        effects.append(nib.load(folder / name).get_fdata()[mask])
    effects = np.array(effects)
    effects[1] *= 1.5  # equal session variances: the mean of 1x and 2x the effect
    upper = np.zeros(mask.shape, dtype=bool)
    upper[:, :, 20:] = True
    upper = upper[mask]
    t = _group_map(group, "face", "t").get_fdata()[mask]
    np.testing.assert_allclose(
        t[upper], stats.ttest_1samp(effects[1:, upper], 0.0, axis=0).statistic, rtol=1e-5
    )
    np.testing.assert_allclose(
        t[~upper], stats.ttest_1samp(effects[:, ~upper], 0.0, axis=0).statistic, rtol=1e-5
    )
    sidecar = json.loads(
        (group / f"task-faces_space-{SPACE}_contrast-face_stat-t_statmap.json").read_text()
    )
    assert sidecar["DegreesOfFreedom"] == N_SUBJECTS - 1
    assert sidecar["DegreesOfFreedomMinimum"] == N_SUBJECTS - 2
