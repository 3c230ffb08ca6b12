"""``--preset spm12`` with ``--smoothing-fwhm`` and ``--dummy-scans``.

SPM's kernel (``spm_smoothkern``) against its defining integral, the volume convolution
against a direct sum with ``spm_conv_vol``'s edge rules, the smoothed data against the data
of a series smoothed beforehand, and the dummy-scan design against the full run's rows.
"""

from __future__ import annotations

import json
from dataclasses import replace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.integrate import quad
from spm12_reference import (
    ROOT,
    bold_path,
    events_session,
    load_model,
    mask_path,
    needs_reference,
)

from bids_glm.cli.main import main
from bids_glm.design.spm_basis import spm_basis_set
from bids_glm.design.spm_session_design import spm_design
from bids_glm.image.spm_smooth import as_stored, spm_kernel, spm_kernels, spm_smooth_volume
from bids_glm.pipeline.spm_data import read_spm_data

PREFIX = "sub-pilot01_task-facehouse_space-MNI152NLin2009cAsym"


@pytest.mark.parametrize("fwhm_voxels", [0.5, 1.0, 2.0, 3.7])
def test_kernel_is_a_gaussian_convolved_with_a_linear_interpolant(fwhm_voxels):
    """spm_smoothkern(fwhm, x, 1) = int (1 - |t|) N(x + t; 0, s^2) dt over [-1, 1]."""
    sigma = fwhm_voxels / np.sqrt(8 * np.log(2))
    radius = int(np.floor(6 * sigma + 0.5))
    kernel = spm_kernel(fwhm_voxels)
    assert kernel.shape == (2 * radius + 1,)

    def density(x, t):
        return (1 - abs(t)) * np.exp(-((x + t) ** 2) / (2 * sigma**2)) / np.sqrt(2 * np.pi) / sigma

    exact = np.array(
        [
            quad(lambda t, x=x: density(x, t), -1, 1, points=[0])[0]
            for x in range(-radius, radius + 1)
        ]
    )
    assert np.allclose(kernel, exact / exact.sum(), rtol=1e-8, atol=1e-13)
    assert kernel.sum() == pytest.approx(1.0)


def test_kernel_of_zero_fwhm_is_the_identity():
    assert np.array_equal(spm_kernel(0.0), [1.0])


def test_kernels_follow_the_voxel_size_of_each_axis():
    affine = np.diag([2.0, 3.0, 4.0, 1.0])
    kx, ky, kz = spm_kernels(6.0, affine)
    assert np.array_equal(kx, spm_kernel(3.0)) and np.array_equal(kz, spm_kernel(1.5))
    assert np.array_equal(ky, spm_kernel(2.0))


def _direct_conv_vol(volume, kernels):
    """spm_conv_vol by explicit sums: x, y zero outside the grid; z re-normalised."""
    values = np.nan_to_num(volume.astype(float))
    shape = values.shape
    for axis, kernel in enumerate(kernels):
        radius = kernel.size // 2
        out = np.zeros(shape)
        for index in np.ndindex(shape):
            total = weight = 0.0
            for k in range(-radius, radius + 1):
                j = list(index)
                j[axis] += k
                if 0 <= j[axis] < shape[axis]:
                    total += kernel[k + radius] * values[tuple(j)]
                    weight += kernel[k + radius]
            out[index] = total / weight if axis == 2 else total
        values = out
    return values


def test_volume_convolution_follows_spm_conv_vol_edges():
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 10, (7, 6, 5)).astype(np.float32)
    volume[3, 2, 1] = np.nan
    kernels = (spm_kernel(2.0), spm_kernel(1.5), spm_kernel(2.5))
    assert np.allclose(spm_smooth_volume(volume, kernels), _direct_conv_vol(volume, kernels))


def test_stored_values_round_to_the_input_type():
    values = np.array([1.26, -3.74, 1e6])
    assert np.array_equal(as_stored(values, np.int16, 0.5, 1.0), [1.5, -3.5, 0.5 * 32767 + 1])
    assert as_stored(values, np.float32).dtype == np.float32


@needs_reference
def test_smoothing_in_the_reader_equals_a_series_smoothed_beforehand(tmp_path):
    image = nib.load(bold_path(1))
    kernels = spm_kernels(8.0, image.affine)
    series = np.asarray(image.dataobj)[..., :40]
    smoothed = np.stack(
        [as_stored(spm_smooth_volume(series[..., t], kernels), np.float32) for t in range(40)], -1
    )
    raw_path, smoothed_path = tmp_path / "raw.nii", tmp_path / "smoothed.nii"
    nib.Nifti1Image(series, image.affine).to_filename(raw_path)
    nib.Nifti1Image(smoothed, image.affine).to_filename(smoothed_path)
    expected = read_spm_data((smoothed_path,))
    data = read_spm_data((raw_path,), kernels=kernels)
    assert np.array_equal(data.mask, expected.mask)
    assert np.array_equal(data.globals_, expected.globals_)
    assert np.array_equal(data.data[:, :], expected.data[:, :])
    assert data.mask.sum() != read_spm_data((raw_path,)).mask.sum()  # smoothing did act


@needs_reference
def test_dummy_scans_drop_rows_of_the_whole_run_design():
    basis = spm_basis_set(2.0 / 16)
    full = spm_design((events_session(1, 150),), 2.0, basis)
    session = events_session(1, 150 - 4)
    dropped = spm_design((replace(session, dummy_scans=4),), 2.0, basis)
    assert np.allclose(dropped.matrix, full.matrix[4:], atol=1e-12)
    data = read_spm_data((bold_path(1),), dummy_scans=4)
    assert data.n_scans == (146,)
    assert np.array_equal(data.globals_, read_spm_data((bold_path(1),)).globals_[4:])


def _neighbour_correlation(volume: np.ndarray, mask: np.ndarray) -> float:
    """Correlation of in-mask values with their +x neighbours (a smoothness index)."""
    pairs = mask[:-1] & mask[1:]
    return float(np.corrcoef(volume[:-1][pairs], volume[1:][pairs])[0, 1])


@needs_reference
def test_preset_runs_with_smoothing_and_dummy_scans(tmp_path):
    out = tmp_path / "out"
    filters = tmp_path / "filters.json"
    filters.write_text(json.dumps({"bold": {"run": 1}}))
    argv = [str(ROOT / "bids"), str(out), "participant", "--preset", "spm12"]
    argv += ["--smoothing-fwhm", "6", "--dummy-scans", "3", "--mask", str(mask_path(1))]
    argv += ["--bids-filter-file", str(filters), "--skip-bids-validator", "--no-reports"]
    assert main([*argv, "--work-dir", str(tmp_path / "work")]) == 0
    folder = out / "sub-pilot01" / "func"
    design = pd.read_csv(folder / f"{PREFIX}_design.tsv", sep="\t")
    assert len(design) == 147
    sidecar = json.loads((folder / f"{PREFIX}_contrast-face_stat-t_statmap.json").read_text())
    assert sidecar["SPM12"]["EffectiveDegreesOfFreedom"] == pytest.approx(147 - 5 - 4)
    t_map = np.asarray(nib.load(folder / f"{PREFIX}_contrast-face_stat-t_statmap.nii.gz").dataobj)
    unsmoothed = load_model("run1_ar1").image("spmT_0001")  # SPM's, same model unsmoothed
    mask = (unsmoothed != 0) & (t_map != 0)
    assert np.corrcoef(t_map[mask], unsmoothed[mask])[0, 1] > 0.5
    assert _neighbour_correlation(t_map, mask) > _neighbour_correlation(unsmoothed, mask) + 0.1
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "first 3 volumes" in methods and "spm_smooth" in methods
