"""GIfTI runs decoded a volume at a time and summed (issue 18: memory independent of the
run's length), against nibabel's decoding and the held read."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nibabel.gifti import GiftiDataArray, GiftiImage

from bids_glm.cli.main import main
from bids_glm.errors import InputError
from bids_glm.image import surface as surface_module
from bids_glm.image.gifti_volumes import gifti_volumes, streamable, surface_volume_blocks
from bids_glm.pipeline import run_fit, surface_fit
from bids_glm.runtime import progress


def _write(path: Path, series: np.ndarray, encoding: str, endian: str = "LittleEndian") -> Path:
    arrays = [
        GiftiDataArray(row, intent="NIFTI_INTENT_TIME_SERIES", encoding=encoding, endian=endian)
        for row in series
    ]
    GiftiImage(darrays=arrays).to_filename(path)
    return path


@pytest.mark.parametrize("encoding", ["GZipBase64Binary", "Base64Binary", "ASCII"])
@pytest.mark.parametrize(
    "dtype, endian",
    [(np.float32, "LittleEndian"), (np.float32, "BigEndian"), (np.int32, "LittleEndian")],
)
def test_each_volume_is_nibabels(tmp_path, encoding, dtype, endian):
    rng = np.random.default_rng(4)
    series = (100 * rng.standard_normal((5, 11))).astype(dtype)
    path = _write(tmp_path / "run.func.gii", series, encoding, endian)
    assert streamable(path)
    volumes = list(gifti_volumes(path))
    expected = [np.asarray(d.data) for d in nib.load(path).darrays]
    assert len(volumes) == 5
    for got, want in zip(volumes, expected, strict=True):
        assert got.dtype.kind == np.dtype(dtype).kind
        np.testing.assert_array_equal(got, want)


def test_files_it_cannot_stream_are_said_so(tmp_path):
    one_array = tmp_path / "one.func.gii"
    GiftiImage(darrays=[GiftiDataArray(np.ones((11, 5), np.float32))]).to_filename(one_array)
    broken = tmp_path / "broken.func.gii"
    broken.write_text("<GIFTI><DataArray")
    assert not streamable(one_array) and not streamable(broken)


def test_a_damaged_volume_is_named(tmp_path):
    path = _write(tmp_path / "run.func.gii", np.ones((3, 11), np.float32), "Base64Binary")
    text = path.read_text()
    path.write_text(text.replace('Dim0="11"', 'Dim0="12"', 1))
    with pytest.raises(InputError, match="data array 1: 11 values, but Dim0 says 12"):
        list(gifti_volumes(path))


@pytest.mark.parametrize("damage", ["not deflated", "truncated", "bad padding"])
def test_values_that_cannot_be_decoded_are_named(tmp_path, damage):
    path = _write(tmp_path / "run.func.gii", np.ones((2, 64), np.float32), "GZipBase64Binary")
    text = path.read_text()
    start = text.rindex("<Data>") + len("<Data>")
    stop = text.index("</Data>", start)
    encoded = text[start:stop].strip()
    damaged = {
        "not deflated": base64.b64encode(b"plain bytes, not a zlib stream").decode(),
        "truncated": base64.b64encode(base64.b64decode(encoded)[:-8]).decode(),
        "bad padding": encoded[:-3],
    }[damage]
    path.write_text(text[:start] + damaged + text[stop:])
    volumes = gifti_volumes(path)
    assert next(volumes).size == 64  # the first array is intact
    with pytest.raises(InputError, match="data array 2: its GZipBase64Binary values cannot be"):
        next(volumes)


def test_blocks_hold_both_hemispheres_analysed_vertices_and_kept_volumes(tmp_path):
    rng = np.random.default_rng(6)
    left, right = rng.standard_normal((9, 8)), rng.standard_normal((9, 6))
    paths = (
        _write(tmp_path / "L.func.gii", left.astype(np.float32), "GZipBase64Binary"),
        _write(tmp_path / "R.func.gii", right.astype(np.float32), "GZipBase64Binary"),
    )
    analysed = np.ones(14, dtype=bool)
    analysed[[0, 9]] = False
    keep = np.ones(9, dtype=bool)
    keep[[0, 5]] = False
    blocks = [b.copy() for b in surface_volume_blocks(paths, (8, 6), analysed, keep, 3)]
    assert [b.shape for b in blocks] == [(3, 12), (3, 12), (1, 12)]
    expected = np.concatenate([left, right], axis=1)[keep][:, analysed].astype(np.float32)
    np.testing.assert_array_equal(np.concatenate(blocks), expected)
    with pytest.raises(InputError, match="9 volumes, but the model describes 10"):
        list(surface_volume_blocks(paths, (8, 6), analysed, np.ones(10, bool), 3))
    _write(paths[1], right[:7].astype(np.float32), "GZipBase64Binary")
    with pytest.raises(InputError, match=r"R\.func\.gii: fewer volumes than the other"):
        list(surface_volume_blocks(paths, (8, 6), analysed, keep, 3))


def _participant(bids: Path, out: Path, *extra: str) -> int:
    arguments = [str(bids), str(out), "participant", "--space", "fsaverage5", "--no-reports"]
    arguments += ["--skip-bids-validator", "--model-maps", "--dummy-scans", "2"]
    return main([*arguments, "--work-dir", str(out.parent / f"work-{out.name}"), *extra])


@pytest.mark.parametrize("noise_model, smoothing", [("ar1", ()), ("ols", ()), ("ar1", ("6",))])
def test_a_run_streamed_by_volumes_agrees_with_holding_it(
    tmp_path, monkeypatch, capfd, noise_model, smoothing
):
    """Two runs of both hemispheres, dummy scans dropped, streamed against held: the same maps
    up to the sums' exact scaling, except where an AR(1) estimate sits on a 0.01 bin edge;
    never held (nibabel's whole-file reader is not called). Smoothed along the meshes too:
    run 1's vertex turned non-finite past the first block makes its stream decode twice."""
    from bids_glm.demo.surface_dataset import make_surface_demo

    bids = tmp_path / "bids"
    make_surface_demo(
        bids,
        "fsaverage5",
        templateflow_dir=tmp_path / "tf",
        n_subjects=1,
        n_volumes=60,
        mesh_size=3,
    )
    left = next(bids.rglob("*_run-1_hemi-L_*_bold.func.gii"))
    image = nib.load(left)
    image.darrays[10].data = np.where(np.arange(642) == 5, np.nan, image.darrays[10].data)
    nib.save(image, left)  # vertex 5 of run 1 is unusable, as held
    extra = ("--noise-model", noise_model)
    if smoothing:
        monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "tf"))
        extra += ("--smoothing-fwhm", *smoothing)
    assert _participant(bids, tmp_path / "held", *extra) == 0

    def refused(*args, **kwargs):
        raise AssertionError("the run was held")

    capfd.readouterr()
    monkeypatch.setattr(progress, "PROGRESS_INTERVAL_S", 0.0)  # a line for every block
    monkeypatch.setattr(run_fit, "HOLD_SERIES_MAX_BYTES", 0)
    monkeypatch.setattr(surface_fit, "SURFACE_BLOCK_VOLUMES", 7)
    monkeypatch.setattr(surface_module, "read_surface_series", refused)
    assert _participant(bids, tmp_path / "streamed", *extra) == 0
    log = capfd.readouterr().err
    assert ("run-1_hemi-L" in log and "decoding the run again" in log) == bool(smoothing), log
    summed = re.findall(
        r"run-2_hemi-L_space-fsaverage5_bold.func.gii: (\d+) of 58 volumes summed", log
    )
    assert [int(n) for n in summed] == list(range(7, 58, 7))  # kept volumes; not the last
    held = tmp_path / "held"
    held_maps = sorted(held.rglob("*_statmap.func.gii"))
    assert len(held_maps) > 30
    edges = {}
    for path in held.rglob("*_stat-ar1_statmap.func.gii"):
        ar1 = _values(path)
        key = path.name.split("_space-")[0]  # run and hemisphere
        edges[key] = (ar1 != 0) & (np.abs(ar1 * 100.0 - np.round(ar1 * 100.0)) < 1e-3)
    for path in held_maps:
        expected = _values(path)
        got = _values(tmp_path / "streamed" / path.relative_to(held))
        key = path.name.split("_space-")[0]
        if key in edges:
            edge = edges[key]
        else:  # subject level: either run's edge
            hemi = path.name.split("_hemi-")[1][0]
            edge = np.any([e for k, e in edges.items() if f"hemi-{hemi}" in k], axis=0)
            edge = edge if edge.shape else np.zeros(expected.shape, bool)
        tolerance = 1e-3 * max(1.0, np.abs(expected).max())
        assert np.all(np.abs(got - expected)[~edge] <= tolerance), path.name
        if "hemi-L" in path.name and "stat-z" in path.name and "run-2" not in path.name:
            assert expected[5] == got[5] == 0.0  # left out in both


def _values(path: Path) -> np.ndarray:
    return np.asarray(nib.load(path).agg_data(), dtype=np.float64)
