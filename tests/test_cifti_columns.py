"""CIFTI runs read and fitted a block of grayordinates at a time (issue 18: memory
independent of the run's length), against the held read and nibabel."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.cifti2 import cifti2_axes
from test_cifti import ENTITY, N_CORTEX, brain_models, make_cifti_dataset, write_dtseries

from bids_glm.cli.main import main
from bids_glm.errors import InputError
from bids_glm.image import cifti as cifti_module
from bids_glm.image.cifti import CiftiGeometry
from bids_glm.pipeline import run_fit, surface_fit


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


@pytest.mark.parametrize("every_third_left_out", [False, True])
def test_volume_blocks_are_nibabels_kept_volumes_in_time_order(tmp_path, every_third_left_out):
    path, _ = _dtseries(tmp_path)
    n_grayordinates = len(brain_models())
    analysed = np.ones(n_grayordinates, dtype=bool)
    if every_third_left_out:
        analysed[1::3] = False
    keep = np.ones(30, dtype=bool)
    keep[[0, 1, 17, 29]] = False
    columns = CiftiGeometry(brain_models(), analysed).columns(path, keep)
    blocks = list(columns.volume_blocks(4))
    assert [block.shape[0] for block in blocks] == [4] * 6 + [2]
    assert all(block.dtype == np.float32 and block.flags.c_contiguous for block in blocks)
    expected = np.asarray(nib.load(path).dataobj)[keep][:, analysed]
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(InputError, match="shorter than its header says"):
        next(columns.volume_blocks(4))


def test_scaled_integer_series_are_read_as_nibabel_scales_them(tmp_path):
    """A dtseries stored as int16 with scl_slope and scl_inter (NIfTI-2 header bytes
    176-191): blocks of grayordinates and of volumes are nibabel's scaled values."""
    series = np.arange(30 * len(brain_models()), dtype=np.int16).reshape(30, -1) % 1000
    path = tmp_path / "run.dtseries.nii"
    axes = (cifti2_axes.SeriesAxis(0.0, 2.0, 30, unit="SECOND"), brain_models())
    image = nib.Cifti2Image(series, header=axes)
    image.nifti_header.set_intent("ConnDenseSeries")
    image.to_filename(path)
    raw = bytearray(path.read_bytes())
    raw[176:192] = np.array([0.5, 7.0], dtype="<f8").tobytes()
    path.write_bytes(bytes(raw))
    expected = np.asarray(nib.load(path).get_fdata(), dtype=np.float32)
    assert expected[1, 1] == np.float32(0.5 * series[1, 1] + 7.0)
    columns = CiftiGeometry.whole(brain_models()).columns(path)
    np.testing.assert_array_equal(columns.read(slice(0, columns.n_columns)), expected)
    np.testing.assert_array_equal(np.concatenate(list(columns.volume_blocks(8))), expected)


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


def test_how_cifti_runs_are_read():
    """By grayordinates unless smoothed or globally scaled; those are held when small (as
    nilearn rounds them) and streamed by volumes otherwise."""
    from types import SimpleNamespace

    geometry = CiftiGeometry.whole(brain_models())
    small = SimpleNamespace(kept_volumes=np.ones(100, dtype=bool))
    large_volumes = run_fit.HOLD_SERIES_MAX_BYTES // (4 * geometry.n_values) + 1
    large = SimpleNamespace(kept_volumes=np.ones(large_volumes, dtype=bool))

    def settings(fwhm_mm: float, scaling: str):
        model = SimpleNamespace(smoothing_fwhm_mm=fwhm_mm, signal_scaling=scaling)
        return SimpleNamespace(single_trial=None, model=model)

    for design in (small, large):
        assert run_fit.run_reading(design, geometry, settings(0, "percent")) == "grayordinates"
        assert run_fit.run_reading(design, geometry, settings(0, "none")) == "grayordinates"
    for case in (settings(4.0, "percent"), settings(0.0, "global")):
        assert run_fit.run_reading(small, geometry, case) == "held"
        assert run_fit.run_reading(large, geometry, case) == "grayordinate volumes"


def _meshes(folder: Path) -> Path:
    """Sphere meshes with the test axis' vertex counts, as fMRIPrep names a subject's."""
    from bids_glm.demo.surface_mesh import fibonacci_sphere, placed, write_mesh

    folder.mkdir(parents=True)
    for hemi, n in zip("LR", N_CORTEX.values(), strict=True):
        write_mesh(
            folder / f"hemi-{hemi}_midthickness.surf.gii", placed(fibonacci_sphere(n), hemi), hemi
        )
    return folder


@pytest.mark.parametrize(
    "noise_model, options",
    [
        ("ar1", ("--smoothing-fwhm", "4")),
        ("ols", ("--smoothing-fwhm", "4")),
        ("ar1", ("--signal-scaling", "global")),
    ],
)
def test_a_run_streamed_by_volumes_agrees_with_holding_it(
    tmp_path, monkeypatch, noise_model, options
):
    """Smoothed (4 mm) or globally scaled, streamed in blocks of 7 kept volumes (dummy
    scans dropped) into sums, against the held read: the same maps up to the sums' exact
    scaling, except where an AR(1) estimate sits on a 0.01 bin edge; never held."""
    bids = _messy_dataset(tmp_path)
    extra = ("--noise-model", noise_model, "--dummy-scans", "2", *options)
    extra += ("--surface-mesh-dir", str(_meshes(tmp_path / "meshes")))
    assert _participant(bids, tmp_path / "held", *extra) == 0

    def refused(*args, **kwargs):
        raise AssertionError("the run was held")

    monkeypatch.setattr(run_fit, "HOLD_SERIES_MAX_BYTES", 0)
    monkeypatch.setattr(surface_fit, "CIFTI_BLOCK_VOLUMES", 7)
    monkeypatch.setattr(cifti_module, "_matrix", refused)
    assert _participant(bids, tmp_path / "streamed", *extra) == 0
    held = tmp_path / "held"
    held_maps = sorted(held.rglob("*_statmap.dscalar.nii"))
    assert len(held_maps) > 20
    edges = {run: np.zeros(len(brain_models()), dtype=bool) for run in ("run-1", "run-2")}
    for run in edges if noise_model == "ar1" else ():
        ar1 = _values(next(held.rglob(f"*_{run}_*_stat-ar1_statmap.dscalar.nii")))
        edges[run] = (ar1 != 0) & (np.abs(ar1 * 100.0 - np.round(ar1 * 100.0)) < 1e-3)
        assert edges[run].sum() <= 5  # of 574 grayordinates
    for path in held_maps:
        expected = _values(path)
        got = _values(tmp_path / "streamed" / path.relative_to(held))
        run = next((run for run in edges if run in path.name), None)
        edge = edges[run] if run else edges["run-1"] | edges["run-2"]
        tolerance = 1e-3 * max(1.0, np.abs(expected).max())
        assert np.all(np.abs(got - expected)[~edge] <= tolerance), path.name


def _values(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).dataobj)[0].astype(np.float64)
