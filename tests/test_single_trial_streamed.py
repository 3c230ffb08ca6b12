"""Single-trial runs summed as they stream, their series kept by voxel chunks (issue 18).

A volume run too large to hold (``HOLD_SERIES_MAX_BYTES``) is fitted from sums over its
volumes, as without ``--single-trial``, and its series is kept beside the sums
(`bids_glm.pipeline.kept_series.KeptSeries`), in a work-folder file when large: the beta
series must equal the held run's to the bit, and the ordinary maps the default run's.
"""

from __future__ import annotations

import mmap
import warnings

import nibabel as nib
import numpy as np
import pytest

import bids_glm.glm.lsa as lsa
import bids_glm.glm.single_trial as glm_single_trial
import bids_glm.pipeline.chunked_series as chunked_series
from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.demo.surface_dataset import make_surface_demo
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.map_files import read_map_series
from bids_glm.pipeline import run_fit
from bids_glm.pipeline.kept_series import KeptSeries
from bids_glm.runtime import spill

MESHES = {"fsaverage5": 3, "fsLR": 1500}  # small meshes, as test_single_trial_surfaces


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("single_trial_streamed")
    make_demo_dataset(root / "bids", n_subjects=1, n_runs=1)
    return root


def _analyse(demo, out, *options):
    command = [str(demo / "bids"), str(out), "participant", "--work-dir", str(out) + "-work"]
    command += ["--no-reports", *options]
    assert main(command) == 0
    return out / "sub-01" / "func"


def _images(func):
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(func.glob("*.nii.gz"))}


@pytest.fixture
def streamed_and_spilled(monkeypatch):
    """Every run streamed, every scratch array of the series and estimates in a file; the
    arrays made are recorded."""
    monkeypatch.setattr(run_fit, "HOLD_SERIES_MAX_BYTES", 0)
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    made = []

    def recorded(shape, dtype, folder):
        array = spill.scratch_array(shape, dtype, folder)
        made.append(array)
        return array

    monkeypatch.setattr(chunked_series, "scratch_array", recorded)
    monkeypatch.setattr(glm_single_trial, "scratch_array", recorded)
    monkeypatch.setattr(lsa, "scratch_array", recorded)
    return made


@pytest.mark.parametrize(
    ("estimator", "noise_model"), [("lss", "ar1"), ("lss", "ols"), ("lsa", "ar1")]
)
def test_streamed_beta_series_equal_the_held_runs(
    demo, tmp_path, streamed_and_spilled, estimator, noise_model
):
    options = ["--confounds", "motion6", "--noise-model", noise_model]
    options += ["--single-trial", estimator]
    options += ["--single-trial-maps", "t"]
    with pytest.MonkeyPatch.context() as held:
        held.setattr(run_fit, "HOLD_SERIES_MAX_BYTES", 2**40)
        expected = _images(_analyse(demo, tmp_path / "held", *options))
    plain = _images(_analyse(demo, tmp_path / "plain", *options[:4]))
    streamed_and_spilled.clear()
    written = _images(_analyse(demo, tmp_path / "streamed", *options))
    assert written.keys() == expected.keys()
    series = [name for name in written if "_betaseries" in name]
    assert len(series) == 6  # beta and t of 3 conditions
    for name in series:
        np.testing.assert_array_equal(written[name], expected[name], err_msg=name)
    for name in plain:  # the ordinary maps: the default (streamed) run's
        np.testing.assert_array_equal(written[name], plain[name], err_msg=name)
    # the series, the estimates and their variances (and LSA's AR(1) summaries, its OLS
    # estimates and lag products by blocks) were mapped from files, none left behind
    n_voxels = expected[series[0]].any(axis=-1).sum()
    assert all(_mapped(a) for a in streamed_and_spilled)
    assert len(streamed_and_spilled) == (4 if estimator == "lsa" else 3)
    assert all(a.size >= n_voxels for a in streamed_and_spilled)
    assert not [p for p in (tmp_path / "streamed-work").rglob("*") if p.is_file()]


def _mapped(array):
    while isinstance(array, np.ndarray):
        array = array.base
    return isinstance(array, memoryview) and isinstance(array.obj, mmap.mmap)


def _blocks(values, sizes):
    start = 0
    for size in sizes:
        yield values[start : start + size].copy()
        start += size


@pytest.mark.parametrize("scaling", ["percent", "none", "global"])
def test_kept_series_reads_back_the_held_paths_scaled_values(tmp_path, monkeypatch, scaling):
    monkeypatch.setattr(spill, "SPILL_MIN_BYTES", 1)
    rng = np.random.default_rng(3)
    n_scans, n_voxels = 37, 5000  # over two stored chunks of 2,048 voxels
    values = (900 + 40 * rng.standard_normal((n_scans, n_voxels))).astype(np.float32)
    values[:, 10] = 0.25  # a mean below 1
    kept = KeptSeries(n_scans, n_voxels, scaling, tmp_path)
    for block in _blocks(values, [16, 16, 5]):
        kept.add(block)
    with pytest.raises(RuntimeError):
        kept[:, 0:10]  # not finished
    kept.finish(values.mean(axis=0))  # what the stream's sums give (RunSums.voxel_mean)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = scale_signal(values.copy(), scaling)
    assert kept.shape == (n_scans, n_voxels)
    for voxels in (slice(0, 1), slice(1, 3000), slice(2047, 2049), slice(4999, 5000)):
        read = kept[:, voxels]
        assert read.dtype == np.float32
        if scaling == "global":  # the mean of the voxel means, not numpy's float32 grand mean
            np.testing.assert_allclose(read, expected[:, voxels], rtol=0, atol=1e-4)
        else:
            np.testing.assert_array_equal(read, expected[:, voxels])


def test_kept_series_must_be_complete(tmp_path):
    kept = KeptSeries(20, 100, "percent", tmp_path)
    kept.add(np.ones((16, 100), np.float32))
    with pytest.raises(ValueError, match="16 of 20 scans"):
        kept.finish(np.ones(100, np.float32))


@pytest.mark.parametrize("space", ["fsaverage5", "fsLR"])
def test_streamed_surface_beta_series_equal_the_held_runs(tmp_path, streamed_and_spilled, space):
    """GIfTI runs (decoded a volume at a time and smoothed along the meshes) and CIFTI runs
    (read a block of volumes at a time) keep their series as volume runs do."""
    make_surface_demo(
        tmp_path / "bids", space, n_subjects=1, n_runs=1, n_volumes=100, mesh_size=MESHES[space]
    )
    options = ["--space", space, "--skip-bids-validator", "--single-trial", "lss"]
    options += ["--single-trial-maps", "t"]

    def series(out):
        func = _analyse(tmp_path, out, *options)
        files = sorted(func.glob("*_betaseries.*i*"))  # a hemisphere's file, or CIFTI's
        return {path.name: read_map_series([path]) for path in files}

    with pytest.MonkeyPatch.context() as held:
        held.setattr(run_fit, "HOLD_SERIES_MAX_BYTES", 2**40)
        expected = series(tmp_path / "held")
    streamed_and_spilled.clear()
    written = series(tmp_path / "streamed")
    assert written.keys() == expected.keys()
    assert len(written) == (12 if space == "fsaverage5" else 6)  # beta and t, 3 conditions
    for name, values in written.items():
        np.testing.assert_array_equal(values, expected[name], err_msg=name)
    # the series was kept by chunks of locations (n_chunks, n_scans, chunk), in a file
    assert [a.shape[1] for a in streamed_and_spilled if a.ndim == 3] == [100]
    assert all(_mapped(a) for a in streamed_and_spilled)
