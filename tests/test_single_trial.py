"""Single-trial estimates (issue 19): LSA and LSS against per-trial fits of fit_glm."""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.design.drift import cosine_drift
from bids_glm.design.matrix import make_design_matrix
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.scaling import scale_signal
from bids_glm.glm.single_trial import (
    TrialLayout,
    lsa_layout,
    lss_combinations,
    lss_design,
    lss_fit,
)
from bids_glm.image.io import read_masked_series


def _problem(seed=0, n=120, n_voxels=400):
    rng = np.random.default_rng(seed)
    trials = rng.random((n, 12)) ** 3
    design = np.column_stack(
        [trials, rng.normal(size=(n, 1)) * 5, cosine_drift(0.01, np.arange(n) * 2.0), np.ones(n)]
    )
    walk = np.cumsum(rng.normal(size=(n, n_voxels)), axis=0)
    noise = walk * 0.3 + rng.normal(size=(n, n_voxels))
    data = (design @ rng.normal(size=(design.shape[1], n_voxels)) + noise).astype(np.float32)
    layout = TrialLayout(tuple(range(12)), (0,) * 5 + (1,) * 4 + (2,) * 3, design.shape[1])
    return design, data, layout


def _brute_force(design, data, layout, noise_model):
    fits = []
    for trial in range(layout.n_trials):
        model = lss_design(design, layout, trial)
        names = [f"c{k}" for k in range(model.shape[1])]
        fits.append(fit_glm(model, data, names, noise_model=noise_model))
    return fits


def test_lss_models_have_trial_other_trials_other_conditions_and_nuisance():
    design, _, layout = _problem()
    models = lss_combinations(layout)
    # trial, other trials of its condition, 2 other conditions, 1 confound + drifts + constant
    assert models[0].shape == (design.shape[1], 1 + 1 + 2 + design.shape[1] - 12)
    np.testing.assert_array_equal(models[0][:, 0], np.eye(design.shape[1])[:, 0])
    np.testing.assert_array_equal(models[0][:5, 1], [0, 1, 1, 1, 1])


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_equals_brute_force(noise_model):
    design, data, layout = _problem()
    estimates = lss_fit(design, data, layout, noise_model, keep_ar1=True)
    fits = _brute_force(design, data, layout, noise_model)
    brute = np.stack([fit.beta[0] for fit in fits])
    if noise_model == "ols":
        np.testing.assert_allclose(estimates.beta, brute, rtol=0, atol=1e-8 * np.abs(brute).max())
        return
    rho = np.stack([fit.ar1 for fit in fits])
    np.testing.assert_allclose(estimates.ar1, rho, rtol=0, atol=1e-12)
    scaled = rho * 100
    on_edge = np.abs(scaled - np.round(scaled)) < 1e-9
    differs = ~np.isclose(estimates.beta, brute, rtol=0, atol=1e-8 * np.abs(brute).max())
    assert not np.any(differs & ~on_edge)
    assert on_edge.mean() < 0.01


def test_lss_ar1_bins_are_the_truncated_coefficients_of_each_model():
    from bids_glm.glm.lss_ar1 import binned_steps
    from bids_glm.glm.lss_terms import lss_pass, lss_terms, trial_means

    design, data, layout = _problem()
    terms = lss_terms(design, np.asarray(layout.trial_columns), np.asarray(layout.trial_groups))
    summary = lss_pass(terms, data, 64, True, 1)
    rho = np.empty(summary.gamma.shape)
    chunks = [slice(0, 150), slice(150, 400)]
    steps = binned_steps(terms, summary, trial_means(terms, data), 100, chunks, 2, rho)
    brute = np.stack([fit.ar1 for fit in _brute_force(design, data, layout, "ar1")])
    np.testing.assert_allclose(rho, brute, rtol=0, atol=1e-12)
    on_edge = np.abs(brute * 100 - np.round(brute * 100)) < 1e-9
    np.testing.assert_array_equal(steps[~on_edge], np.trunc(brute * 100)[~on_edge])
    assert steps.dtype == np.int16


def test_lss_trial_means_are_each_models_global_residual_mean():
    """From the voxel-summed series: the mean over every voxel and scan of each trial model's
    OLS residuals, as fitting that model to every voxel gives it."""
    from bids_glm.glm.lss_terms import lss_terms, trial_means

    design, data, layout = _problem()
    terms = lss_terms(design, np.asarray(layout.trial_columns), np.asarray(layout.trial_groups))
    expected = []
    for trial in range(layout.n_trials):
        model = lss_design(design, layout, trial)
        residuals = data - model @ np.linalg.lstsq(model, data.astype(np.float64), rcond=None)[0]
        expected.append(residuals.mean())
    scale = np.abs(data).mean()
    np.testing.assert_allclose(trial_means(terms, data), expected, rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_made_block_by_block_equals_one_block(monkeypatch, noise_model):
    """Voxels' summaries are held a block at a time (memory): blocks of 64 voxels give the
    estimates, coefficients and variances of one block of all 400, to rounding (a BLAS
    product's columns may be summed differently as their number changes), and every
    model's AR(1) bin the same."""
    from bids_glm.glm import single_trial

    design, data, layout = _problem(seed=3)
    whole = lss_fit(design, data, layout, noise_model, keep_ar1=True, variance=True)
    monkeypatch.setattr(single_trial, "REFIT_CHUNK_VOXELS", 64)
    monkeypatch.setattr(single_trial, "BLOCK_BYTES", 1)  # one refit chunk a block
    blocks = lss_fit(design, data, layout, noise_model, keep_ar1=True, variance=True)
    for got, expected in ((blocks.beta, whole.beta), (blocks.variance, whole.variance)):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())
    if noise_model == "ar1":
        np.testing.assert_allclose(blocks.ar1, whole.ar1, rtol=0, atol=1e-14)
        np.testing.assert_array_equal(np.trunc(blocks.ar1 * 100), np.trunc(whole.ar1 * 100))


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
@pytest.mark.parametrize("summary_bytes", [2**40, 1])
def test_lsa_is_one_fit_of_the_trial_design(monkeypatch, noise_model, summary_bytes):
    """`lsa_fit`, in one block or three (a first pass for the AR(1) bins, a second to refit),
    gives `fit_glm`'s estimates of the trials' columns and their variances."""
    from bids_glm.glm import lsa

    monkeypatch.setattr(lsa, "SUMMARY_BLOCK_BYTES", summary_bytes)  # 1: blocks of 4,096
    design, data, layout = _problem(seed=5, n_voxels=9000)
    names = [f"c{k}" for k in range(design.shape[1])]
    fit = fit_glm(design, data, names, noise_model=noise_model)
    trials = list(layout.trial_columns)
    expected_variance = fit.bin_cov[:, trials, trials][fit.voxel_bin].T * fit.sigma2
    estimates = lsa.lsa_fit(design, data, layout, noise_model, variance=True)
    for got, expected in (
        (estimates.beta, fit.beta[trials]),
        (estimates.variance, expected_variance),
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14 * np.abs(expected).max())
    np.testing.assert_array_equal(estimates.dof, np.full(12, fit.dof))


# --- end to end on the demo dataset ------------------------------------------------------

SPACE = "MNI152NLin2009cAsym"
PREFIX = f"sub-01_task-faces_run-1_space-{SPACE}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_trial")
    make_demo_dataset(root / "bids", n_subjects=1, n_runs=1)
    return root


def _analyse(demo, estimator, noise_model):
    out = demo / f"out-{estimator}-{noise_model}"
    if not out.exists():
        command = [str(demo / "bids"), str(out), "participant", "--work-dir", str(demo / "work")]
        command += ["--no-reports", "--confounds", "motion6", "--noise-model", noise_model]
        command += ["--single-trial", estimator, "--single-trial-maps", "t"] if estimator else []
        assert main(command) == 0
    return out / "sub-01" / "func"


def _data(demo, func):
    """The scaled in-mask data the run's GLM fitted, and the analysis mask."""
    mask_image = nib.load(func / f"sub-01_task-faces_space-{SPACE}_mask.nii.gz")
    mask = np.asarray(mask_image.dataobj) > 0
    bold = next((demo / "bids" / "derivatives").rglob("*_desc-preproc_bold.nii.gz"))
    series = read_masked_series(bold, mask, mask_image.affine)
    return scale_signal(series.data, "percent"), mask


def _events(demo):
    events = pd.read_csv(next((demo / "bids").rglob("*_events.tsv")), sep="\t")
    return events[["onset", "duration", "trial_type"]].sort_values("onset", kind="stable")


def _brute_force_lss(demo, func, data, noise_model):
    """The test's own loop: one design per trial from relabelled events, fitted alone."""
    design = pd.read_csv(func / f"{PREFIX}_design.tsv", sep="\t")
    times = np.array(json.loads((func / f"{PREFIX}_design.json").read_text())["FrameTimes"])
    events = _events(demo)
    nuisance = design.drop(columns=sorted(events["trial_type"].unique()))
    betas = {}
    for condition in sorted(events["trial_type"].unique()):
        rows = events.index[events["trial_type"] == condition]
        estimates = []
        for row in rows:
            relabelled = events.copy()
            relabelled.loc[rows, "trial_type"] = "zzOther"
            relabelled.loc[row, "trial_type"] = "aaTrial"
            conditions = make_design_matrix(times, relabelled, drift_model="none")
            model = pd.concat(
                [conditions.drop(columns="constant").reset_index(drop=True), nuisance], axis=1
            )
            fit = fit_glm(model.to_numpy(), data, list(model.columns), noise_model=noise_model)
            estimates.append(fit.beta[0])
        betas[condition] = np.stack(estimates)
    return betas


def _series(func, condition, mask):
    image = nib.load(func / f"{PREFIX}_desc-{condition}_betaseries.nii.gz")
    return np.asarray(image.dataobj)[mask].T  # (trials, V)


def test_default_outputs_are_unchanged_by_single_trial_estimates(demo):
    plain = _analyse(demo, None, "ols")
    lss = _analyse(demo, "lss", "ols")
    names = sorted(p.name for p in plain.iterdir())
    added = sorted(set(p.name for p in lss.iterdir()) - set(names))
    # per condition: the series, its sidecar and table; the t series and its sidecar
    series = [name for name in added if "_betaseries." in name]
    assert len(series) == 15
    assert sorted(set(added) - set(series)) == [
        f"{PREFIX}_desc-lsa_design.{e}" for e in ("json", "tsv")
    ]
    for name in names:
        if name.endswith(".nii.gz"):
            np.testing.assert_array_equal(
                np.asarray(nib.load(plain / name).dataobj),
                np.asarray(nib.load(lss / name).dataobj),
            )


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_outputs_equal_brute_force_fits(demo, noise_model):
    func = _analyse(demo, "lss", noise_model)
    data, mask = _data(demo, func)
    brute = _brute_force_lss(demo, func, data, noise_model)
    for condition, expected in brute.items():
        written = _series(func, condition, mask)
        assert written.shape == expected.shape
        scale = np.abs(expected).max()
        close = np.isclose(written, expected, rtol=1e-5, atol=1e-5 * scale)  # float32 files
        assert close.mean() > (0.99 if noise_model == "ar1" else 1.0 - 1e-12)


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lss_in_memory_equals_brute_force(demo, noise_model):
    """1e-8 of the largest estimate; for AR(1), bar voxels on a bin edge (fewer than 1%)."""
    func = _analyse(demo, "lsa", "ols")
    data, _ = _data(demo, func)
    lsa = pd.read_csv(func / f"{PREFIX}_desc-lsa_design.tsv", sep="\t")
    events = _events(demo)
    trial_columns = [c for c in lsa.columns if "_trial" in c]
    groups = [c.split("_trial")[0] for c in trial_columns]
    layout = lsa_layout(list(lsa.columns), trial_columns, groups)
    estimates = lss_fit(lsa.to_numpy(), data, layout, noise_model, keep_ar1=True)
    brute = np.concatenate(list(_brute_force_lss(demo, func, data, noise_model).values()))
    assert len(trial_columns) == len(events)
    close = np.abs(estimates.beta - brute) <= 1e-8 * np.abs(brute).max()
    if noise_model == "ols":
        assert close.all()
        return
    scaled = estimates.ar1 * 100
    on_edge = np.abs(scaled - np.round(scaled)) < 1e-9
    assert not np.any(~close & ~on_edge)
    assert on_edge.mean() < 0.01


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_lsa_outputs_equal_a_fit_of_the_written_lsa_design(demo, noise_model):
    func = _analyse(demo, "lsa", noise_model)
    data, mask = _data(demo, func)
    lsa = pd.read_csv(func / f"{PREFIX}_desc-lsa_design.tsv", sep="\t")
    design = pd.read_csv(func / f"{PREFIX}_design.tsv", sep="\t")
    fit = fit_glm(lsa.to_numpy(), data, list(lsa.columns), noise_model=noise_model)
    events = _events(demo)
    for condition in sorted(events["trial_type"].unique()):
        columns = [c for c in lsa.columns if c.startswith(f"{condition}_trial")]
        # the condition's regressor is the sum of its trials' regressors
        np.testing.assert_allclose(lsa[columns].sum(axis=1), design[condition], atol=1e-12)
        expected = fit.beta[[list(lsa.columns).index(c) for c in columns]]
        written = _series(func, condition, mask)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6 * scale)
    # the rest of the LSA design is the ordinary design's
    nuisance = [c for c in design.columns if c not in set(events["trial_type"])]
    np.testing.assert_array_equal(lsa[nuisance].to_numpy(), design[nuisance].to_numpy())


def test_sidecar_lists_the_trials_in_onset_order(demo):
    func = _analyse(demo, "lss", "ar1")
    events = _events(demo)
    for condition in sorted(events["trial_type"].unique()):
        sidecar = json.loads((func / f"{PREFIX}_desc-{condition}_betaseries.json").read_text())
        expected = events[events["trial_type"] == condition]
        trials = sidecar["Trials"]
        assert [t["index"] for t in trials] == list(range(len(expected)))
        assert [t["onset"] for t in trials] == pytest.approx(expected["onset"].tolist())
        assert [t["duration"] for t in trials] == pytest.approx(expected["duration"].tolist())
        assert {t["trial_type"] for t in trials} == {condition}
        assert sidecar["Estimator"] == "LSS" and sidecar["NoiseModel"] == "ar1"
        assert sidecar["Confounds"] and sidecar["DriftModel"] == "cosine"
        image = nib.load(func / f"{PREFIX}_desc-{condition}_betaseries.nii.gz")
        assert image.shape[3] == len(expected) == sidecar["NumberOfTrials"]


def test_single_trial_options_are_checked(demo, capsys):
    base = [str(demo / "bids"), str(demo / "out-bad"), "participant", "--dry-run"]
    assert main([*base, "--single-trial-conditions", "face"]) == 3
    assert "needs --single-trial" in capsys.readouterr().err
    assert main([*base, "--single-trial", "lss", "--hrf-model", "spm + derivative"]) == 3
    assert "one HRF column" in capsys.readouterr().err
    assert main([*base, "--single-trial-maps", "t"]) == 3
    assert "--single-trial-maps needs --single-trial" in capsys.readouterr().err
    assert main([*base, "--single-trial", "lss", "--parametric-modulators", "response_time"]) == 3
    assert "no parametric modulators" in capsys.readouterr().err


def test_conditions_are_checked_before_any_fit(demo, tmp_path, capsys):
    """An unknown condition, or one a run lacks, stops the analysis at planning (exit 3)."""
    import shutil

    base = [str(demo / "bids"), str(tmp_path / "out"), "participant"]
    base += ["--work-dir", str(tmp_path / "work"), "--single-trial", "lss"]
    assert main([*base, "--single-trial-conditions", "face", "Face"]) == 3
    err = capsys.readouterr().err
    assert "no run has trials of Face" in err and "face, house, scrambled" in err
    assert not (tmp_path / "out" / "sub-01").exists()
    bids = tmp_path / "bids"
    shutil.copytree(demo / "bids", bids, symlinks=True)
    path = next(bids.rglob("*_events.tsv"))
    path.chmod(0o644)
    events = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    events.loc[events["trial_type"] == "house", "onset"] = "n/a"  # no house trials left
    path.write_text(events.to_csv(sep="\t", index=False))
    base[0] = str(bids)
    assert main([*base, "--single-trial-conditions", "face", "house"]) == 3
    assert "no run has trials of house" in capsys.readouterr().err
    assert main([*base, "--dry-run"]) == 0  # all conditions: the run's own
    assert not list((tmp_path / "out").rglob("*_betaseries.*"))


def test_trials_are_the_events_without_their_na_rows_in_onset_order(demo, tmp_path):
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(demo / "bids", bids, symlinks=True)
    path = next(bids.rglob("*_events.tsv"))
    path.chmod(0o644)
    events = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    extra = events.iloc[:3].copy()
    extra.loc[extra.index[0], "onset"] = "n/a"
    extra.loc[extra.index[1], "trial_type"] = "n/a"
    extra.loc[extra.index[2], "onset"] = "n/a"
    shuffled = pd.concat([events.iloc[::-1], extra], ignore_index=True)  # not in onset order
    path.write_text(shuffled.to_csv(sep="\t", index=False))
    out = tmp_path / "out"
    command = [str(bids), str(out), "participant", "--work-dir", str(tmp_path / "work")]
    assert main([*command, "--no-reports", "--single-trial", "lss", "--noise-model", "ols"]) == 0
    func = out / "sub-01" / "func"
    kept = events.astype({"onset": float, "duration": float})
    for condition in sorted(kept["trial_type"].unique()):
        expected = kept[kept["trial_type"] == condition].sort_values("onset", kind="stable")
        sidecar = json.loads((func / f"{PREFIX}_desc-{condition}_betaseries.json").read_text())
        assert [t["onset"] for t in sidecar["Trials"]] == pytest.approx(list(expected["onset"]))
        assert sidecar["NumberOfTrials"] == len(expected)
        image = nib.load(func / f"{PREFIX}_desc-{condition}_betaseries.nii.gz")
        assert image.shape[3] == len(expected)


def _t_series(func, condition, mask):
    image = nib.load(func / f"{PREFIX}_stat-t_desc-{condition}_betaseries.nii.gz")
    return np.asarray(image.dataobj)[mask].T


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_t_series_equal_the_t_of_brute_force_fits(demo, noise_model):
    """LSS: each trial's model fitted alone, t of its first column; LSA: the LSA fit's t."""
    lss, lsa_out = _analyse(demo, "lss", noise_model), _analyse(demo, "lsa", noise_model)
    data, mask = _data(demo, lss)
    lsa = pd.read_csv(lsa_out / f"{PREFIX}_desc-lsa_design.tsv", sep="\t")
    fit = fit_glm(lsa.to_numpy(), data, list(lsa.columns), noise_model=noise_model)
    t_lsa = fit.beta / np.sqrt(np.einsum("vjj->jv", fit.bin_cov[fit.voxel_bin]) * fit.sigma2)
    trial_columns = [c for c in lsa.columns if "_trial" in c]
    layout = lsa_layout(
        list(lsa.columns), trial_columns, [c.split("_trial")[0] for c in trial_columns]
    )
    t_lss = []
    for trial in range(layout.n_trials):
        model = lss_design(lsa.to_numpy(), layout, trial)
        one = fit_glm(model, data, [str(k) for k in range(model.shape[1])], noise_model)
        t_lss.append(one.beta[0] / np.sqrt(one.bin_cov[one.voxel_bin, 0, 0] * one.sigma2))
    t_lss = np.stack(t_lss)
    start = 0
    for condition in sorted(_events(demo)["trial_type"].unique()):
        columns = [c for c in trial_columns if c.startswith(f"{condition}_trial")]
        expected_lss = t_lss[start : start + len(columns)]
        start += len(columns)
        expected_lsa = t_lsa[[list(lsa.columns).index(c) for c in columns]]
        for func, expected in ((lss, expected_lss), (lsa_out, expected_lsa)):
            written = _t_series(func, condition, mask)
            close = np.isclose(written, expected, rtol=1e-5, atol=1e-5)  # float32 files
            assert close.mean() > (0.99 if noise_model == "ar1" else 1.0 - 1e-12)
        sidecar = json.loads(
            (lss / f"{PREFIX}_stat-t_desc-{condition}_betaseries.json").read_text()
        )
        assert sidecar["Statistic"] == "t" and len(sidecar["DegreesOfFreedom"]) == len(columns)


def test_trials_table_round_trip(demo):
    """The _betaseries.tsv labels every volume: a pattern analysis needs nothing else."""
    func = _analyse(demo, "lss", "ols")
    events = _events(demo)
    for condition in sorted(events["trial_type"].unique()):
        table = pd.read_csv(func / f"{PREFIX}_desc-{condition}_betaseries.tsv", sep="\t")
        image = nib.load(func / f"{PREFIX}_desc-{condition}_betaseries.nii.gz")
        expected = events[events["trial_type"] == condition]
        assert list(table.columns) == ["index", "onset", "duration", "trial_type"]
        assert len(table) == image.shape[3] == len(expected)
        assert list(table["index"]) == list(range(len(expected)))
        np.testing.assert_allclose(table["onset"], expected["onset"])
        np.testing.assert_allclose(table["duration"], expected["duration"])
        assert set(table["trial_type"]) == {condition}


def test_a_run_lacking_a_requested_condition_is_named():
    from types import SimpleNamespace

    from bids_glm.errors import InputError
    from bids_glm.pipeline.single_trial import check_single_trial_plan
    from bids_glm.settings import Settings

    def design(label, conditions):
        return SimpleNamespace(run=SimpleNamespace(label=label), conditions=conditions)

    units = [SimpleNamespace(designs=(design("run-1", ("a", "b")), design("run-2", ("a",))))]
    settings = Settings(
        bids_dir=".",
        output_dir="out",
        analysis_level="participant",
        work_dir="w",
        single_trial="lss",
    )
    check_single_trial_plan(units, settings)  # default: each run's own conditions
    with pytest.raises(InputError, match="run-2 has no trials of b"):
        check_single_trial_plan(units, replace(settings, single_trial_conditions=("a", "b")))


@pytest.mark.parametrize(("estimator", "noise_model"), [("lss", "ar1"), ("lsa", "ols")])
def test_methods_text_names_the_estimator_and_cites_mumford(estimator, noise_model):
    from bids_glm.derivatives.methods import methods_facts, render_methods
    from bids_glm.settings import ModelSettings, Settings

    settings = Settings(
        bids_dir=".",
        output_dir="out",
        analysis_level="participant",
        work_dir="w",
        model=ModelSettings(noise_model=noise_model),
        single_trial=estimator,
        single_trial_conditions=("face",),
    )
    facts = methods_facts(settings, 1, ["faces"], 1, SPACE, [2.0], "bids-glm", ["face"])
    texts = render_methods(facts)
    name = {"lss": "least-squares-separate (LSS)", "lsa": "least-squares-all (LSA)"}[estimator]
    noise = {"ar1": "(AR(1)", "ols": "(OLS)"}[noise_model]
    assert name in texts["md"] and noise in texts["md"]
    assert "Mumford" in texts["md"] and "10.1016/j.neuroimage.2011.08.076" in texts["bib"]
    assert ("its own AR(1) coefficients" in texts["md"]) == (estimator == "lss")


def test_report_shows_the_trial_design_and_the_peak_voxel_estimates(demo, tmp_path):
    from bids_glm.report.single_trial_figures import trial_estimates_svg

    out = tmp_path / "out"
    command = [str(demo / "bids"), str(out), "participant", "--work-dir", str(tmp_path / "w")]
    command += ["--no-pdf", "--single-trial", "lss", "--noise-model", "ols"]
    assert main(command) == 0
    html = (out / "sub-01.html").read_text()
    assert "run-1 single-trial (LSA) design" in html
    for condition in ("face", "house", "scrambled"):
        assert f"run-1 {condition} trial estimates" in html
    assert "figure unavailable" not in html
    # the figure's numbers: the series at the voxel of the largest run-level z
    func = out / "sub-01" / "func"
    z = np.asarray(nib.load(func / f"{PREFIX}_contrast-face_stat-z_statmap.nii.gz").dataobj)
    peak = np.unravel_index(np.nanargmax(z), z.shape)
    series = np.asarray(nib.load(func / f"{PREFIX}_desc-face_betaseries.nii.gz").dataobj[peak])
    drawn = trial_estimates_svg(np.arange(series.size) * 10.0, series, "face")
    assert drawn.count("<circle") == series.size
    assert "Mumford" in (out / "logs" / "CITATION.md").read_text()


def test_held_series_is_released_before_any_map_is_written(demo, tmp_path, monkeypatch):
    """The run's series is held for the estimates only: neither the contrast maps nor the
    beta series are written while it is alive (its memory would add to theirs)."""
    import weakref

    import bids_glm.pipeline.run as run

    held, alive_at = [], {}

    def fit_and_watch(*args, **kwargs):
        result = fit_run_as_read(*args, **kwargs)
        held.append(weakref.ref(result[3]))
        return result

    def watched(name, function):
        def call(*args, **kwargs):
            alive_at[name] = held[0]() is not None
            return function(*args, **kwargs)

        return call

    fit_run_as_read = run.fit_run_as_read
    monkeypatch.setattr(run, "fit_run_as_read", fit_and_watch)
    monkeypatch.setattr(run, "_write_contrasts", watched("contrasts", run._write_contrasts))
    monkeypatch.setattr(
        run, "write_single_trials", watched("beta series", run.write_single_trials)
    )
    command = [str(demo / "bids"), str(tmp_path / "out"), "participant", "--no-reports"]
    command += ["--work-dir", str(tmp_path / "work"), "--single-trial", "lss"]
    assert main(command) == 0
    assert len(held) == 1  # one run, held
    assert alive_at == {"contrasts": False, "beta series": False}
    assert len(list((tmp_path / "out").rglob("*_betaseries.nii.gz"))) == 3
