"""Fitting from sums over streamed volumes (issue 18) against fitting the held series."""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
import pytest

from bids_glm.glm.contrast import compute_contrast
from bids_glm.glm.cross_products import CrossProductAccumulator
from bids_glm.glm.fit import fit_glm
from bids_glm.glm.fit_from_sums import fit_from_sums
from bids_glm.glm.inplace_gemm import add_product
from bids_glm.glm.scaling import scale_signal
from bids_glm.image.forked_reducers import forking_available
from bids_glm.image.io import read_masked_series
from bids_glm.image.stream import stream_masked_series

AFFINE = np.array([[2.0, 0, 0, -20], [0, 2.5, 0, -30], [0, 0, 3.0, -10], [0, 0, 0, 1]])
NAMES = ["a", "b", "slow", "trend", "constant"]


def _design(n: int, constant: bool = True) -> np.ndarray:
    t = np.arange(n)
    columns = [np.sin(t / 7.0), (t % 20 < 10).astype(float), np.cos(t / 30.0), t / n]
    return np.column_stack(columns + ([np.ones(n)] if constant else []))


def _series(n: int, n_voxels: int, seed: int = 1) -> np.ndarray:
    """AR(1) noise (rho 0-0.6) on voxel baselines near 1000, with task responses."""
    rng = np.random.default_rng(seed)
    noise = np.zeros((n, n_voxels))
    rho = rng.uniform(0.0, 0.6, n_voxels)
    for t, step in enumerate(rng.normal(size=(n, n_voxels))):
        noise[t] = (rho * noise[t - 1] if t else 0.0) + step
    signal = _design(n)[:, :2] @ rng.normal(0, 5, (2, n_voxels))
    return (rng.normal(1000, 200, n_voxels) + signal + 10 * noise).astype(np.float32)


def _summed(X: np.ndarray, Y: np.ndarray, block: int, n_threads: int = 1, chunk: int = 700):
    sums = CrossProductAccumulator(X, Y.shape[1], n_threads=n_threads, chunk_voxels=chunk)
    for start in range(0, Y.shape[0], block):
        sums.add(Y[start : start + block])
    return sums.result()


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_unscaled_fit_from_sums_equals_the_held_fit(noise_model):
    """Without scaling both paths compute the same numbers: equal to ~1e-12."""
    X, Y = _design(150), _series(150, 2000)
    held = fit_glm(X, Y, NAMES, noise_model=noise_model)
    summed = fit_from_sums(X, _summed(X, Y, 16), NAMES, noise_model, signal_scaling="none")
    np.testing.assert_array_equal(summed.voxel_bin, held.voxel_bin)
    for name in ("beta", "sigma2", "r_squared", "bin_rho", "bin_cov"):
        expected = getattr(held, name)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(getattr(summed, name), expected, atol=1e-10 * scale)
    if noise_model == "ar1":
        np.testing.assert_allclose(summed.ar1, held.ar1, atol=1e-12)


@pytest.mark.parametrize("scaling", ["percent", "global"])
@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_scaled_fit_from_sums_agrees_with_float32_scaling(noise_model, scaling):
    """Scaling applied to the sums is exact; the held path rounds each value to float32.

    The difference is that rounding (~1e-7 relative): AR(1) estimates agree to 1e-5,
    z to 1e-3 outside voxels whose estimate sits within 1e-5 of a 0.01 bin edge.
    """
    X, Y = _design(150), _series(150, 3000)
    held = fit_glm(X, scale_signal(Y.copy(), scaling), NAMES, noise_model=noise_model)
    summed = fit_from_sums(X, _summed(X, Y, 16), NAMES, noise_model, signal_scaling=scaling)
    weights = np.array([[1.0, -1.0, 0, 0, 0]])
    dz = np.abs(
        compute_contrast(summed, weights, "t", "c").z - compute_contrast(held, weights, "t", "c").z
    )
    edge = np.zeros(Y.shape[1], bool)
    if noise_model == "ar1":
        np.testing.assert_allclose(summed.ar1, held.ar1, atol=1e-5)
        edge = np.abs(held.ar1 * 100 - np.round(held.ar1 * 100)) < 1e-3
    assert np.all(dz[~edge] < 1e-3)
    np.testing.assert_allclose(summed.beta, held.beta, rtol=1e-4, atol=1e-4)


def test_sums_do_not_depend_on_blocks_threads_or_chunks():
    X, Y = _design(90, constant=False), _series(90, 1500, seed=2)
    one = _summed(X, Y, 90, n_threads=1, chunk=10**6)
    other = _summed(X, Y, 7, n_threads=3, chunk=333)
    for name in ("projected", "neighbour", "squares", "lag1", "last", "total"):
        expected = getattr(one, name)
        scale = np.abs(expected).max()
        np.testing.assert_allclose(getattr(other, name), expected, atol=1e-12 * scale)
    np.testing.assert_array_equal(other.running_sum32 / np.float32(90), Y.mean(axis=0))


def test_sums_are_identical_whatever_the_number_of_threads():
    """Chunks do not depend on the threads, so neither does any rounding: bit-identical."""
    X, Y = _design(40, constant=False), _series(40, 1000, seed=8)
    one = _summed(X, Y, 8, n_threads=1, chunk=96)
    three = _summed(X, Y, 8, n_threads=3, chunk=96)
    for name in ("projected", "neighbour", "total", "squares", "lag1", "last", "running_sum32"):
        np.testing.assert_array_equal(getattr(three, name), getattr(one, name))


def test_the_ols_pass_from_sums_is_identical_whatever_the_number_of_threads():
    from bids_glm.glm.fit_from_sums import ols_from_sums

    X, Y = _design(60), _series(60, 2500, seed=9)
    gain, offset = np.full(Y.shape[1], 0.1), -100.0
    passes = [
        ols_from_sums(X, _summed(X, Y, 8), gain, offset, True, 700, n_threads=n) for n in (1, 3)
    ]
    for name in ("beta", "moments", "lag_cross"):
        np.testing.assert_array_equal(getattr(passes[1], name), getattr(passes[0], name))


def test_a_design_without_constant_and_censored_rows():
    """No constant column (the e1 terms at work) and rows dropped before fitting."""
    X, Y = _design(120, constant=False), _series(120, 800, seed=3)
    kept = np.ones(120, bool)
    kept[[0, 1, 40, 41, 77]] = False
    Xk, Yk = X[kept], Y[kept]
    held = fit_glm(Xk, scale_signal(Yk.copy(), "none"), NAMES[:-1], noise_model="ar1")
    summed = fit_from_sums(Xk, _summed(Xk, Yk, 5), NAMES[:-1], "ar1", signal_scaling="none")
    np.testing.assert_array_equal(summed.voxel_bin, held.voxel_bin)
    np.testing.assert_allclose(summed.beta, held.beta, atol=1e-10 * np.abs(held.beta).max())
    np.testing.assert_allclose(summed.sigma2, held.sigma2, rtol=1e-9)


def test_accumulator_refuses_too_many_or_too_few_volumes():
    X, Y = _design(30), _series(30, 10)
    sums = CrossProductAccumulator(X, 10)
    sums.add(Y[:20])
    with pytest.raises(ValueError, match="20 of 30"):
        sums.result()
    with pytest.raises(ValueError, match="40 volumes"):
        sums.add(Y[:20])


def test_varying_voxels_are_those_whose_values_differ():
    """A positive sum of squares marks exactly the voxels that change, down to float32's
    smallest steps (subnormal differences) and at large baselines."""
    tiny = np.float32(1.4e-45)  # the smallest subnormal float32
    columns = [
        [5.0] * 6,  # constant
        [1e30] * 6,  # constant, large
        [0.0, tiny, 0.0, 0.0, 0.0, 0.0],  # one subnormal step
        [3e4] * 5 + [np.nextafter(np.float32(3e4), np.float32(np.inf))],  # one ulp, last
        [-2.0, -2.0, -2.0, 7.0, -2.0, -2.0],
        [0.0] * 6,
    ]
    Y = np.array(columns, dtype=np.float32).T
    X = np.column_stack([np.arange(6.0), np.ones(6)])
    sums = CrossProductAccumulator(X, Y.shape[1], chunk_voxels=2)
    sums.add(Y[:4])
    sums.add(Y[4:])
    np.testing.assert_array_equal(sums.varying(), Y.max(axis=0) > Y.min(axis=0))
    np.testing.assert_array_equal(sums.varying(), [False, False, True, True, True, False])


def test_add_product_accumulates_in_place_into_strided_views():
    """BLAS ``out += left @ right`` on column slices of wider arrays, the rest untouched."""
    rng = np.random.default_rng(6)
    wide, operator, data = (
        rng.normal(size=(5, 40)),
        rng.normal(size=(5, 30)),
        rng.normal(size=(9, 50)),
    )
    expected = wide.copy()
    expected[:, 7:29] += operator[:, 3:12] @ data[:, 11:33]
    add_product(wide[:, 7:29], operator[:, 3:12], data[:, 11:33])
    np.testing.assert_allclose(wide, expected, rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(wide[:, :7], expected[:, :7])
    np.testing.assert_array_equal(wide[:, 29:], expected[:, 29:])
    with pytest.raises(ValueError, match="contiguous rows"):
        add_product(wide[:, :9], operator[:, :9].T.copy().T, data[:9, :9])
    with pytest.raises(ValueError, match="cannot add"):
        add_product(wide[:, :9], operator[:, :3], data[:4, :9])


@pytest.mark.parametrize("in_processes", [True, False])
@pytest.mark.parametrize("smoothing_mm", [0.0, 5.0])
@pytest.mark.parametrize("n_threads", [0, 1, 3])
@pytest.mark.parametrize("block_volumes", [1, 6, 100])
def test_streamed_blocks_equal_the_held_series(
    tmp_path, n_threads, block_volumes, smoothing_mm, in_processes
):
    """Blocks in time order, rows bit-identical to `read_masked_series`, same usable/mean,
    whether volumes are reduced in forked processes, in threads or (no worker) in the
    calling thread."""
    rng = np.random.default_rng(4)
    data = rng.normal(500, 40, (14, 12, 9, 31)).astype(np.float32)
    data[5, 5, 4] = 7.0  # constant voxel
    data[6, 6, 4, 9] = np.nan  # non-finite voxel
    path = tmp_path / "bold.nii.gz"
    nib.Nifti1Image(data, AFFINE).to_filename(path)
    mask = np.zeros(data.shape[:3], bool)
    mask[3:11, 2:10, 2:8] = True
    keep = np.ones(31, bool)
    keep[[0, 1, 12, 20]] = False
    held = read_masked_series(path, mask, AFFINE, smoothing_mm, keep_volumes=keep)
    blocks: list[np.ndarray] = []
    streamed = stream_masked_series(
        path,
        mask,
        AFFINE,
        lambda block: blocks.append(block.copy()),
        smoothing_mm,
        keep_volumes=keep,
        n_threads=n_threads,
        block_volumes=block_volumes,
        in_processes=in_processes,
    )
    assert all(len(block) <= block_volumes for block in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), held.data)
    np.testing.assert_array_equal(streamed.usable, held.usable)
    # the NaN voxel is flagged (it is zeroed before smoothing); smoothed, no voxel is constant
    assert streamed.usable.sum() == held.usable.size - (2 if smoothing_mm == 0 else 1)
    np.testing.assert_array_equal(streamed.mean_volume, held.mean_volume)
    assert streamed.n_volumes == 27
    # the consumer's sums can tell the varying voxels instead of the stream's ranges
    sums = CrossProductAccumulator(np.ones((27, 1)), int(mask.sum()), n_threads=n_threads)
    told = stream_masked_series(
        path,
        mask,
        AFFINE,
        sums.add,
        smoothing_mm,
        keep_volumes=keep,
        n_threads=n_threads,
        block_volumes=block_volumes,
        in_processes=in_processes,
        varying=sums.varying,
    )
    np.testing.assert_array_equal(told.usable, held.usable)


def _bold_with_mask(tmp_path, n_volumes=31):
    rng = np.random.default_rng(11)
    data = rng.normal(500, 40, (14, 12, 9, n_volumes)).astype(np.float32)
    path = tmp_path / "bold.nii.gz"
    nib.Nifti1Image(data, AFFINE).to_filename(path)
    mask = np.zeros(data.shape[:3], bool)
    mask[3:11, 2:10, 2:8] = True
    keep = np.ones(n_volumes, bool)
    keep[[0, 1, 12, 20]] = False
    return path, mask, keep


@pytest.mark.skipif(not forking_available(), reason="forked reducers: Linux only")
@pytest.mark.parametrize("block_volumes", [1, 6, 100])
def test_sums_added_by_the_child_and_this_process_are_the_sums_of_the_blocks(
    tmp_path, block_volumes
):
    """One reducing child: it and the reading thread claim each block's voxel chunks as they
    come; the sums equal those of `add` on the same blocks in one process, to the bit."""
    path, mask, keep = _bold_with_mask(tmp_path)
    held = read_masked_series(path, mask, AFFINE, 5.0, keep_volumes=keep)
    design = np.random.default_rng(3).normal(size=(27, 4))
    design[:, 0] = 1.0
    expected = CrossProductAccumulator(design, held.data.shape[1], 1, chunk_voxels=40)
    for start in range(0, 27, block_volumes):
        expected.add(held.data[start : start + block_volumes])
    shared = CrossProductAccumulator(design, held.data.shape[1], 1, chunk_voxels=40)
    streamed = stream_masked_series(
        path,
        mask,
        AFFINE,
        shared,
        5.0,
        keep_volumes=keep,
        n_threads=1,
        block_volumes=block_volumes,
        in_processes=True,
        varying=shared.varying,
    )
    assert shared._claims is not None  # shared with the child
    np.testing.assert_array_equal(streamed.usable, held.usable)
    for name, value in vars(expected.result()).items():
        np.testing.assert_array_equal(getattr(shared.result(), name), value, err_msg=name)


@pytest.mark.skipif(not forking_available(), reason="forked reducers: Linux only")
def test_a_failure_of_the_childs_share_of_the_sums_is_raised_here(tmp_path):
    path, mask, keep = _bold_with_mask(tmp_path)
    parent = os.getpid()

    class FailingInChild(CrossProductAccumulator):
        def add_share(self, index, block, alive):
            if os.getpid() != parent:
                raise ArithmeticError("the child's share failed")
            super().add_share(index, block, alive)

    sums = FailingInChild(np.ones((27, 1)), int(mask.sum()), 1, chunk_voxels=40)
    with pytest.raises(RuntimeError, match="the child's share failed"):
        stream_masked_series(
            path, mask, AFFINE, sums, 5.0, keep_volumes=keep, n_threads=1, in_processes=True
        )


def _participant(bids, out, extra=()):
    from bids_glm.cli.main import main

    arguments = [str(bids), str(out), "participant", "--participant-label", "01"]
    arguments += ["--work-dir", str(out.parent / f"work-{out.name}"), "--no-reports"]
    arguments += ["--smoothing-fwhm", "6", "--noise-model", "ar1", "--model-maps"]
    arguments += ["--dummy-scans", "2", "--confounds", "scrub:FD=0.5", *extra]
    assert main(arguments) == 0


def test_the_pipeline_streams_large_runs_and_agrees_with_holding_them(tmp_path, monkeypatch):
    """Every run streamed (threshold 0) against every run held: same maps, up to rounding.

    Dummy scans and scrubbing drop volumes, so the lags run over the kept volumes only.
    """
    from bids_glm.demo.dataset import make_demo_dataset
    from bids_glm.pipeline import run_fit as run_module

    bids = tmp_path / "bids"
    make_demo_dataset(bids, n_subjects=1, n_runs=1)
    calls = {"streamed": 0}
    streamed_fit = run_module.fit_streamed_run

    def counting(*args, **kwargs):
        calls["streamed"] += 1
        return streamed_fit(*args, **kwargs)

    _participant(bids, tmp_path / "held")
    monkeypatch.setattr(run_module, "HOLD_SERIES_MAX_BYTES", 0)
    monkeypatch.setattr(run_module, "fit_streamed_run", counting)
    _participant(bids, tmp_path / "streamed")
    assert calls["streamed"] == 1
    held_dir = tmp_path / "held" / "sub-01" / "func"
    ar1 = np.asanyarray(nib.load(next(held_dir.glob("*_stat-ar1_statmap.nii.gz"))).dataobj)
    in_mask = ar1 != 0
    edge = in_mask & (np.abs(ar1 * 100.0 - np.round(ar1 * 100.0)) < 1e-3)
    assert in_mask.sum() > 10_000 and edge.sum() < 0.01 * in_mask.sum()
    held_maps = sorted(held_dir.glob("*_statmap.nii.gz"))
    assert len(held_maps) > 10
    for path in held_maps:
        expected = np.asanyarray(nib.load(path).dataobj).astype(np.float64)
        got = np.asanyarray(
            nib.load(tmp_path / "streamed" / path.relative_to(tmp_path / "held")).dataobj
        )
        difference = np.abs(got - expected)
        tolerance = 1e-3 * max(1.0, np.abs(expected).max()) if "stat-" in path.name else 1e-3
        assert np.all(difference[~edge] <= tolerance), path.name


def test_a_truncated_series_is_an_input_error_while_streaming(tmp_path):
    from bids_glm.errors import InputError

    path = tmp_path / "bold.nii"
    nib.Nifti1Image(np.ones((6, 5, 4, 20), np.float32), AFFINE).to_filename(path)
    path.write_bytes(path.read_bytes()[:-300])
    mask = np.ones((6, 5, 4), bool)
    with pytest.raises(InputError, match="truncated"):
        stream_masked_series(path, mask, AFFINE, lambda block: None, n_threads=2)


@pytest.mark.parametrize(
    ("lines_per_group", "sigma"),
    [(512, (1.1, 0.9, 1.3)), (2048, (1.1, 0.9, 1.3)), (2048, (4.2, 3.0, 5.0))],
)
def test_smoothing_in_groups_of_lines_is_scipy_on_a_large_volume(lines_per_group, sigma):
    """More lines per pass than one group: each pass must not overwrite lines to come.
    Wide kernels (radius 12-20) span several blocks of output rows."""
    from scipy.ndimage import gaussian_filter1d

    from bids_glm.image.smooth import plan_box_smoother

    rng = np.random.default_rng(5)
    shape = (47, 91, 63)
    assert shape[1] * shape[2] > 2 * lines_per_group
    volume = np.asfortranarray(rng.normal(800, 60, shape).astype(np.float32))
    sigma = np.array(sigma)
    keep = (slice(5, 40), slice(3, 88), slice(0, 63))
    smoother = plan_box_smoother(shape, keep, sigma, lines_per_group=lines_per_group)
    expected = volume.copy()
    for axis, s in enumerate(sigma):
        gaussian_filter1d(expected, s, axis=axis, output=expected)
    workspace = smoother.workspace()
    np.testing.assert_array_equal(smoother.apply(volume, workspace), expected[keep])


def _pass_work(smoother) -> int:
    """Products the passes form: lines x output rows, over their groups."""
    total = 0
    for axis_pass in smoother.passes:
        for group in axis_pass.groups:
            blocks = axis_pass.blocks[group.blocks]
            n_lines = (group.rows.stop - group.rows.start) * (group.lines.stop - group.lines.start)
            total += n_lines * (blocks[-1][1] - blocks[0][0])
    return total


@pytest.mark.parametrize("lines_per_group", [64, 256])
def test_smoothing_only_what_a_mask_needs_keeps_its_voxels_scipy(lines_per_group):
    """Passes cut to the lines and rows a wanted voxel depends on: the wanted voxels are
    scipy's to the bit, also when the values left out are stale ones of an earlier volume."""
    from scipy.ndimage import gaussian_filter1d

    from bids_glm.image.smooth import plan_box_smoother

    rng = np.random.default_rng(6)
    shape = (40, 46, 37)
    grid = np.indices(shape).astype(float)
    centre, radii = np.array([20, 23, 18])[:, None, None, None], np.array([15, 19, 12])
    ellipsoid = (((grid - centre) / radii[:, None, None, None]) ** 2).sum(axis=0) <= 1
    keep = tuple(slice(int(i.min()), int(i.max()) + 1) for i in np.nonzero(ellipsoid))
    sigma = np.array([1.1, 0.9, 1.3])
    smoother = plan_box_smoother(shape, keep, sigma, ellipsoid[keep], lines_per_group)
    full = plan_box_smoother(shape, keep, sigma, None, lines_per_group)
    assert _pass_work(smoother) < 0.9 * _pass_work(full)  # an ellipsoid: ~52 % of its box
    workspace = smoother.workspace()
    for scale in (1000.0, 3.0):  # the second volume sees the first's stale values
        volume = np.asfortranarray(rng.normal(scale, scale / 10, shape).astype(np.float32))
        expected = volume.copy()
        for axis, s in enumerate(sigma):
            gaussian_filter1d(expected, s, axis=axis, output=expected)
        got = smoother.apply(volume, workspace)
        np.testing.assert_array_equal(got[ellipsoid[keep]], expected[keep][ellipsoid[keep]])


def test_streamed_runs_warn_about_floored_means_as_held_runs_do(tmp_path, monkeypatch, capfd):
    """Means below 1 are warned about among the voxels that are fitted: in-mask voxels that
    are empty (outside the field of view: constant, so left out) are not counted, whether
    the run is held or streamed."""
    from bids_glm.demo.dataset import make_demo_dataset
    from bids_glm.pipeline import run_fit as run_module

    bids = tmp_path / "bids"
    make_demo_dataset(bids, n_subjects=1, n_runs=1)
    bold_path = next(bids.rglob("*_desc-preproc_bold.nii.gz"))
    mask_path = next(bids.rglob("*_desc-brain_mask.nii.gz"))
    bold = nib.load(bold_path)
    data = np.asarray(bold.dataobj).astype(np.float32)
    inside = np.argwhere(np.asarray(nib.load(mask_path).dataobj) > 0)
    for i, j, k in inside[:40]:  # empty: outside the field of view
        data[i, j, k] = 0.0
    for i, j, k in inside[-2:]:  # centred data: a mean below 1, varying
        data[i, j, k] = 0.5 + 0.1 * np.sin(np.arange(data.shape[-1]))
    nib.Nifti1Image(data, bold.affine, bold.header).to_filename(bold_path)

    def floored(out):
        arguments = [str(bids), str(out), "participant", "--no-reports", "--smoothing-fwhm", "0"]
        arguments += ["--work-dir", str(tmp_path / f"work-{out.name}")]
        from bids_glm.cli.main import main

        assert main(arguments) == 0
        err = capfd.readouterr().err
        return [line.split("UserWarning: ")[1] for line in err.splitlines() if "below 1" in line]

    held = floored(tmp_path / "held")
    monkeypatch.setattr(run_module, "HOLD_SERIES_MAX_BYTES", 0)
    assert (
        floored(tmp_path / "streamed")
        == held
        == [
            "2 voxels have a temporal mean below 1 (centred, empty or negative data); "
            "floored at 1 before scaling, as nilearn does"
        ]
    )
