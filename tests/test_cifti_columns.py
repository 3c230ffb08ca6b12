"""CIFTI runs read and fitted a block of grayordinates at a time (issue 18: memory
independent of the run's length), against the held read and nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_cifti import ENTITY, brain_models, make_cifti_dataset, write_dtseries

from bids_glm.cli.main import main
from bids_glm.errors import InputError
from bids_glm.image import cifti as cifti_module
from bids_glm.image.cifti import CiftiGeometry
from bids_glm.pipeline import run_fit


def _dtseries(tmp_path: Path, n_volumes: int = 30) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(3)
    data = rng.standard_normal((n_volumes, len(brain_models()))).astype(np.float32)
    path = tmp_path / "run.dtseries.nii"
    write_dtseries(path, data, brain_models())
    return path, data


@pytest.mark.parametrize("block", [slice(0, 7), slice(5, 400), slice(390, None), slice(3, 3)])
def test_a_block_is_nibabels_matrix_of_the_analysed_grayordinates(tmp_path, block):
    """Grayordinates left out of the analysis (here every third) and dropped volumes."""
    path, _ = _dtseries(tmp_path)
    n_grayordinates = len(brain_models())
    analysed = np.arange(n_grayordinates) % 3 != 1
    keep = np.ones(30, dtype=bool)
    keep[[0, 1, 17]] = False
    geometry = CiftiGeometry(brain_models(), analysed)
    columns = geometry.columns(path, keep)
    expected = np.asarray(nib.load(path).dataobj)[keep][:, analysed][:, block]
    got = columns.read(block)
    assert got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    assert columns.n_columns == analysed.sum() and columns.n_kept == 27


def test_a_truncated_file_is_named_when_its_block_is_read(tmp_path):
    path, _ = _dtseries(tmp_path)
    path.write_bytes(path.read_bytes()[:-1000])
    columns = CiftiGeometry.whole(brain_models()).columns(path)
    columns.read(slice(0, 10))  # the file's start is intact
    with pytest.raises(InputError, match=f"{path.name}: shorter than its header says"):
        columns.read(slice(0, columns.n_columns))


def _participant(bids: Path, out: Path, *extra: str) -> int:
    arguments = [str(bids), str(out), "participant", "--space", "fsLR", "--skip-bids-validator"]
    arguments += ["--contrast", "faceVsHouse=face - house", "--model-maps", "--no-reports"]
    return main([*arguments, "--work-dir", str(out.parent / f"work-{out.name}"), *extra])


def _messy_dataset(root: Path) -> Path:
    """The CIFTI test dataset, with a NaN in one grayordinate and a mean below 1 in two."""
    bids = root / "bids"
    truth = make_cifti_dataset(bids)
    data = truth["data"][1].copy()
    data[40, 12] = np.nan
    data[:, 200:202] = 0.5 + 0.1 * np.sin(np.arange(data.shape[0]))[:, None]
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    write_dtseries(func / f"{ENTITY.format(run=1)}_bold.dtseries.nii", data, brain_models())
    return bids


def _floored_warnings(stderr: str) -> list[str]:
    """The warnings on means floored at 1, without the code location they were raised at."""
    return [line.split("UserWarning: ")[1] for line in stderr.splitlines() if "below 1" in line]


@pytest.mark.parametrize("noise_model", ["ar1", "ols"])
def test_read_by_grayordinates_gives_the_held_runs_maps_bit_for_bit(
    tmp_path, monkeypatch, capfd, noise_model
):
    """Two runs, dropped dummy scans, a NaN, constant and sub-1-mean grayordinates: every map
    (run, model and fixed effects) is byte-identical to the held read's, with the same
    warnings; and the run is never held (its whole-matrix reader is not called)."""
    bids = _messy_dataset(tmp_path)
    extra = ("--noise-model", noise_model, "--dummy-scans", "2")
    with monkeypatch.context() as held:
        held.setattr(run_fit, "run_reading", lambda *args: "held")
        assert _participant(bids, tmp_path / "held", *extra) == 0
    held_warnings = _floored_warnings(capfd.readouterr().err)

    def refused(*args, **kwargs):
        raise AssertionError("the run was held")

    monkeypatch.setattr(cifti_module, "_matrix", refused)
    assert _participant(bids, tmp_path / "columns", *extra) == 0
    column_warnings = _floored_warnings(capfd.readouterr().err)
    assert column_warnings == held_warnings
    assert held_warnings == [
        "2 grayordinates have a temporal mean below 1 (centred, empty or "
        "negative data); floored at 1 before scaling, as nilearn does"
    ]
    held_maps = sorted((tmp_path / "held").rglob("*.dscalar.nii"))
    assert len(held_maps) > 20
    for path in held_maps:
        twin = tmp_path / "columns" / path.relative_to(tmp_path / "held")
        assert twin.read_bytes() == path.read_bytes(), path.name


def test_smoothed_and_globally_scaled_cifti_runs_are_held():
    """The two cases that need the whole run before the first block can be fitted."""
    from types import SimpleNamespace

    geometry = CiftiGeometry.whole(brain_models())

    def settings(fwhm_mm: float, scaling: str):
        model = SimpleNamespace(smoothing_fwhm_mm=fwhm_mm, signal_scaling=scaling)
        return SimpleNamespace(single_trial=None, model=model)

    assert run_fit.run_reading(None, geometry, settings(0.0, "percent")) == "grayordinates"
    assert run_fit.run_reading(None, geometry, settings(0.0, "none")) == "grayordinates"
    assert run_fit.run_reading(None, geometry, settings(4.0, "percent")) == "held"
    assert run_fit.run_reading(None, geometry, settings(0.0, "global")) == "held"
