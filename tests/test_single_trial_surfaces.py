"""Single-trial beta series on surfaces (GIfTI pairs) and CIFTI grayordinates (issue 19).

Small surface demos (icosphere order 3, a 1500-point Fibonacci sphere; one run of 100
volumes) are analysed with ``--single-trial``; the written series are reopened with nibabel
and checked against an in-memory LSS fit of the same data, the events and the planted patches.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nibabel.cifti2 import cifti2_axes

from bids_glm.cli.main import main
from bids_glm.demo.surface_dataset import make_surface_demo
from bids_glm.derivatives import naming
from bids_glm.glm.scaling import scale_signal
from bids_glm.glm.single_trial import lsa_layout, lss_fit
from bids_glm.image.cifti import CiftiGeometry
from bids_glm.image.map_files import read_map, read_map_series
from bids_glm.image.surface import SurfaceGeometry, load_gifti_series
from bids_glm.report.collect import read_run
from bids_glm.report.single_trial_figures import single_trial_figures

MESH_SIZES = {"fsaverage5": 3, "fsLR": 1500}
EXTENSIONS = {"fsaverage5": ".func.gii", "fsLR": ".dscalar.nii"}
CONDITIONS = ("face", "house", "scrambled")


def test_surface_series_files_hold_one_named_array_per_map_per_hemisphere():
    geometry = SurfaceGeometry((4, 3), np.array([1, 1, 0, 1, 1, 1, 0], dtype=bool))
    values = np.arange(15, dtype=float).reshape(3, 5) + 0.5
    files = geometry.encode_series_files(values, ["a", "b", "c"])
    assert [extra for extra, _ in files] == [{"hemi": "L"}, {"hemi": "R"}]
    images = {e["hemi"]: nib.GiftiImage.from_bytes(payload) for e, payload in files}
    left = np.stack([d.data for d in images["L"].darrays])
    right = np.stack([d.data for d in images["R"].darrays])
    np.testing.assert_array_equal(
        left, [[0.5, 1.5, 0, 2.5], [5.5, 6.5, 0, 7.5], [10.5, 11.5, 0, 12.5]]
    )
    np.testing.assert_array_equal(right, [[3.5, 4.5, 0], [8.5, 9.5, 0], [13.5, 14.5, 0]])
    assert [d.meta["Name"] for d in images["R"].darrays] == ["a", "b", "c"]
    assert images["L"].meta["AnatomicalStructurePrimary"] == "CortexLeft"
    assert images["R"].meta["AnatomicalStructurePrimary"] == "CortexRight"


def test_cifti_series_file_has_one_named_scalar_per_map():
    models = cifti2_axes.BrainModelAxis.from_mask(np.ones(5, dtype=bool), name="CortexLeft")
    geometry = CiftiGeometry(models, np.array([1, 0, 1, 1, 1], dtype=bool))
    values = np.arange(8, dtype=float).reshape(2, 4)
    ((extra, payload),) = geometry.encode_series_files(values, ["trial-000_onset-1", "x"])
    image = nib.Cifti2Image.from_bytes(payload)
    assert extra == {}
    assert image.nifti_header.get_intent()[0] == "ConnDenseScalar"
    assert list(image.header.get_axis(0).name) == ["trial-000_onset-1", "x"]
    assert image.header.get_axis(1) == models
    np.testing.assert_array_equal(image.get_fdata(), [[0, 0, 1, 2, 3], [4, 0, 5, 6, 7]])


@pytest.fixture(scope="module", params=sorted(MESH_SIZES))
def analysed(request, tmp_path_factory):
    space = request.param
    root = tmp_path_factory.mktemp(f"trials-{space}")
    truth = make_surface_demo(
        root / "bids", space, n_subjects=1, n_runs=1, n_volumes=100, mesh_size=MESH_SIZES[space]
    )
    out = root / "out"
    command = [str(root / "bids"), str(out), "participant", "--space", space, "--no-pdf"]
    command += ["--skip-bids-validator", "--single-trial", "lss", "--single-trial-maps", "t"]
    assert main(command) == 0
    entities = {"sub": "01", "task": "faces", "run": "1", "space": space}
    entities |= {"den": "91k"} if space == "fsLR" else {}
    return {
        "space": space,
        "root": root,
        "func": out / "sub-01" / "func",
        "truth": truth,
        "entities": entities,
    }


def _series_path(analysed, condition, stat=None):
    """The series' name as written (a GIfTI pair: without ``hemi``)."""
    return naming.beta_series_path(
        analysed["func"], analysed["entities"], condition, stat, EXTENSIONS[analysed["space"]]
    )


def _series_files(analysed, condition, stat=None):
    return naming.map_part_files(_series_path(analysed, condition, stat))


def _names(files):
    """Each map's name in the files: GIfTI array meta (both hemispheres agree), CIFTI axis."""
    if files[0].name.endswith(".dscalar.nii"):
        return list(nib.load(files[0]).header.get_axis(0).name)
    names = [[d.meta["Name"] for d in nib.load(f).darrays] for f in files]
    assert names[0] == names[1]
    return names[0]


def test_series_reopen_with_one_map_per_trial_in_onset_order(analysed):
    events = pd.read_csv(next((analysed["root"] / "bids").rglob("*_events.tsv")), sep="\t")
    for condition in CONDITIONS:
        onsets = np.sort(events.loc[events["trial_type"] == condition, "onset"].to_numpy())
        table = pd.read_csv(
            naming.beta_series_path(
                analysed["func"], analysed["entities"], condition, extension=naming.TSV
            ),
            sep="\t",
        )
        np.testing.assert_allclose(table["onset"], onsets)
        for stat in (None, "t"):
            files = _series_files(analysed, condition, stat)
            assert len(read_map_series(files)) == onsets.size
            expected = [
                f"trial-{i:03d}_onset-{o:g}" for i, o in zip(table["index"], onsets, strict=True)
            ]
            assert _names(files) == expected


def _fitted_data(analysed):
    """The run's scaled data at the analysed locations, as the GLM fitted them."""
    mask_path = naming.with_extension(
        naming.mask_path(analysed["func"], naming.subject_level_entities(analysed["entities"])),
        EXTENSIONS[analysed["space"]],
    )
    analysed_mask = read_map(naming.map_part_files(mask_path))[0] > 0
    bold = sorted((analysed["root"] / "bids" / "derivatives").rglob("*_bold.*.*i*"))
    if analysed["space"] == "fsLR":
        series = np.asarray(nib.load(bold[0]).dataobj, dtype=np.float32)
    else:
        series = np.concatenate([load_gifti_series(p) for p in bold], axis=1)  # hemi-L first
    return scale_signal(series[:, analysed_mask], "percent"), analysed_mask


def test_written_series_equal_an_in_memory_lss_fit(analysed):
    """Up to float32 files and the written design's text precision, as for volumes."""
    data, analysed_mask = _fitted_data(analysed)
    stem = naming.trial_design_path(analysed["func"], analysed["entities"], "lsa")
    lsa = pd.read_csv(stem, sep="\t")
    trials = []
    for condition in CONDITIONS:
        sidecar = json.loads(naming.sidecar_path(_series_path(analysed, condition)).read_text())
        trials += [(t["design_column"], condition) for t in sidecar["Trials"]]
    trials.sort(key=lambda trial: list(lsa.columns).index(trial[0]))
    layout = lsa_layout(list(lsa.columns), [c for c, _ in trials], [g for _, g in trials])
    estimates = lss_fit(lsa.to_numpy(dtype=float), data, layout, "ar1")
    for condition in CONDITIONS:
        rows = [k for k, (_, group) in enumerate(trials) if group == condition]
        written = read_map_series(_series_files(analysed, condition))[:, analysed_mask]
        expected = estimates.beta[rows]
        scale = np.abs(expected).max()
        close = np.isclose(written, expected, rtol=1e-5, atol=1e-5 * scale)  # float32 files
        assert close.mean() > 0.99  # AR(1): bar locations whose coefficient sits on a bin edge


def test_planted_trials_are_recovered_in_their_own_hemisphere(analysed):
    planted = {c: np.array(v) for c, v in analysed["truth"]["planted"].items()}
    series = {c: read_map_series(_series_files(analysed, c)) for c in CONDITIONS}
    for condition, columns in planted.items():
        per_trial = series[condition][:, columns].mean(axis=1)  # percent signal change
        assert per_trial.mean() > 1.5 and np.mean(per_trial > 0) >= 0.9, condition
        assert abs(series["scrambled"][:, columns].mean()) < 0.5
    if analysed["space"] == "fsaverage5":  # the left file holds the face patch, not the house
        left = load_gifti_series(_series_files(analysed, "face")[0])
        n_left = left.shape[1]
        assert planted["face"].max() < n_left <= planted["house"].min()
        assert left[:, planted["face"]].mean() > 1.5
        right = load_gifti_series(_series_files(analysed, "house")[1])
        assert right[:, planted["house"] - n_left].mean() > 1.5


def test_report_draws_the_trial_estimates_at_the_peak(analysed):
    design = naming.design_path(analysed["func"], analysed["entities"])
    run = read_run(design, None, {})
    assert [label for label, _ in run.beta_series] == sorted(CONDITIONS)
    figures, notes = single_trial_figures(run)
    assert notes == []
    assert len(figures) == 1 + len(CONDITIONS)
