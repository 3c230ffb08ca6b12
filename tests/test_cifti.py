"""CIFTI-2 grayordinates (fsLR den-91k-like) end to end: discovery, GLM, outputs, nilearn."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mesh_helpers import face_house_events, face_response
from nibabel.cifti2 import cifti2_axes

from bids_glm.cli.main import main
from bids_glm.errors import InputError
from bids_glm.image.cifti import CiftiGeometry, cifti_geometry, read_cifti_series
from bids_glm.image.cifti_header import cifti_header

TR_S = 2.0
N_VOLUMES = 90
N_CORTEX = {"CortexLeft": 300, "CortexRight": 280}
WALL = {"CortexLeft": np.arange(0, 30), "CortexRight": np.arange(250, 280)}  # left out
VOLUME_SHAPE = (6, 6, 6)
STRUCTURES = {
    "thalamus_left": (slice(0, 3), slice(0, 3), slice(0, 3)),
    "amygdala_right": (slice(3, 6), slice(3, 6), slice(2, 5)),
}
ENTITY = "sub-01_task-faces_run-{run}_space-fsLR_den-91k"


def brain_models() -> cifti2_axes.BrainModelAxis:
    """Two cortices (medial walls left out) and two subcortical voxel structures."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -6.0
    axis = None
    for name, n in N_CORTEX.items():
        keep = np.ones(n, dtype=bool)
        keep[WALL[name]] = False
        part = cifti2_axes.BrainModelAxis.from_mask(keep, name=name)
        axis = part if axis is None else axis + part
    for name, where in STRUCTURES.items():
        mask = np.zeros(VOLUME_SHAPE, dtype=bool)
        mask[where] = True
        axis = axis + cifti2_axes.BrainModelAxis.from_mask(mask, name=name, affine=affine)
    return axis


def planted(axis: cifti2_axes.BrainModelAxis) -> np.ndarray:
    """Grayordinates responding to faces: a left-cortex patch and the left thalamus only."""
    where = np.zeros(len(axis), dtype=bool)
    for name, slc, _ in axis.iter_structures():
        idx = np.arange(len(axis))[slc]
        if name == "CIFTI_STRUCTURE_CORTEX_LEFT":
            where[idx[50:90]] = True
        elif name == "CIFTI_STRUCTURE_THALAMUS_LEFT":
            where[idx] = True
    return where


def write_dtseries(path: Path, data: np.ndarray, axis, step_s: float = TR_S) -> None:
    series = cifti2_axes.SeriesAxis(start=0.0, step=step_s, size=data.shape[0], unit="SECOND")
    image = nib.Cifti2Image(data.astype(np.float32), header=(series, axis))
    image.nifti_header.set_intent("ConnDenseSeries")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.to_filename(path)


def make_cifti_dataset(root: Path, seed: int = 0) -> dict:
    """Raw events + fMRIPrep-like CIFTI derivatives: 2 runs; run 2's TR from the SeriesAxis."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "c", "BIDSVersion": "1.9.0"}')
    prep = root / "derivatives" / "fmriprep"
    prep.mkdir(parents=True)
    (prep / "dataset_description.json").write_text(
        json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"})
    )
    events, axis = face_house_events(N_VOLUMES, TR_S), brain_models()
    response, where = face_response(events, N_VOLUMES, TR_S), planted(brain_models())
    data = {}
    for run in (1, 2):
        raw = root / "sub-01" / "func"
        raw.mkdir(parents=True, exist_ok=True)
        events.to_csv(raw / f"sub-01_task-faces_run-{run}_events.tsv", sep="\t", index=False)
        series = 100.0 + rng.standard_normal((N_VOLUMES, len(axis)))
        series[:, where] += 3.0 * response[:, None]
        series[:, -3:] = 0.0  # three dead subcortical voxels: constant, excluded
        data[run] = series.astype(np.float32)
        bold = prep / "sub-01" / "func" / f"{ENTITY.format(run=run)}_bold.dtseries.nii"
        write_dtseries(bold, series, axis)
        if run == 1:
            bold.with_name(bold.name.replace(".dtseries.nii", ".json")).write_text(
                json.dumps({"RepetitionTime": TR_S})
            )
    return {"data": data, "planted": where}


def _run(bids: Path, out: Path, *extra: str) -> int:
    args = [str(bids), str(out), "participant", "--space", "fsLR", "--skip-bids-validator"]
    return main([*args, "--contrast", "faceVsHouse=face - house", *extra])


@pytest.fixture(scope="module")
def cifti_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifti")
    truth = make_cifti_dataset(root / "bids")
    code = _run(root / "bids", root / "out", "--noise-model", "ols")
    return {"code": code, "out": root / "out", "bids": root / "bids", **truth}


def _map(func: Path, stem: str) -> tuple[np.ndarray, nib.Cifti2Image]:
    image = nib.load(func / f"{stem}.dscalar.nii")
    return np.asarray(image.dataobj)[0], image


def test_cifti_outputs_have_the_input_axes_and_intent(cifti_run):
    assert cifti_run["code"] == 0
    func = cifti_run["out"] / "sub-01" / "func"
    stem = "sub-01_task-faces_space-fsLR_den-91k_contrast-faceVsHouse_stat-z_statmap"
    _, image = _map(func, stem)
    assert image.nifti_header.get_intent()[0] == "ConnDenseScalar"
    assert image.header.get_axis(1) == brain_models()
    assert list(image.header.get_axis(0).name) == ["z"]
    sidecar = json.loads((func / f"{stem}.json").read_text())
    assert sidecar["ContrastName"] == "faceVsHouse"
    assert (sidecar["ExcludedGrayordinates"], sidecar["ExcludedValue"]) == (3, 0)
    for run in (1, 2):
        name = f"{ENTITY.format(run=run)}_contrast-faceVsHouse_stat-t_statmap.dscalar.nii"
        assert (func / name).is_file()
    mask = nib.load(func / "sub-01_task-faces_space-fsLR_den-91k_mask.dscalar.nii")
    assert np.asarray(mask.dataobj)[0].sum() == len(brain_models()) - 3
    assert not list(func.glob("*.nii.gz"))
    # TR of run 2 came from the CIFTI SeriesAxis (no sidecar)
    design = json.loads(next(func.glob("*_run-2_*_design.json")).read_text())
    assert design["RepetitionTime"] == TR_S


def test_cifti_finds_planted_grayordinates_in_one_hemisphere_only(cifti_run):
    func = cifti_run["out"] / "sub-01" / "func"
    z, _ = _map(func, "sub-01_task-faces_space-fsLR_den-91k_contrast-faceVsHouse_stat-z_statmap")
    where = cifti_run["planted"]
    assert np.mean(z[where] > 3.1) >= 0.8
    null = ~where
    null[-3:] = False
    assert np.mean(np.abs(z[null]) > 3.1) < 0.01
    assert np.all(z[-3:] == 0)  # excluded grayordinates are written as 0
    # the planted cortex patch is in the left cortex: nothing in the right one
    for name, slc, _ in brain_models().iter_structures():
        if name == "CIFTI_STRUCTURE_CORTEX_RIGHT":
            assert np.mean(z[slc] > 3.1) < 0.01


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_cifti_z_equals_nilearn_run_glm(cifti_run, tmp_path, noise_model):
    """Same (T, V) data and design: run-level and fixed-effects z as nilearn's."""
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import mean_scaling, run_glm

    out = cifti_run["out"]
    if noise_model == "ar1":
        out = tmp_path / "out"
        assert _run(cifti_run["bids"], out, "--noise-model", "ar1") == 0
    func = out / "sub-01" / "func"
    keep = np.ones(len(brain_models()), dtype=bool)
    keep[-3:] = False
    effects, variances = [], []
    for run in (1, 2):
        design = pd.read_csv(next(func.glob(f"*_run-{run}_*_design.tsv")), sep="\t")
        y, _ = mean_scaling(cifti_run["data"][run][:, keep].astype(np.float64))
        labels, results = run_glm(y, design.to_numpy(), noise_model=noise_model)
        weights = np.asarray(design.columns == "face", float) - (design.columns == "house")
        contrast = compute_contrast(labels, results, np.asarray(weights, float), "t")
        effects.append(contrast.effect_size())
        variances.append(contrast.effect_variance())
        stem = f"{ENTITY.format(run=run)}_contrast-faceVsHouse_stat-z_statmap"
        ours, _ = _map(func, stem)
        assert np.abs(ours[keep] - contrast.z_score()).max() < 1e-3
    stem = "sub-01_task-faces_space-fsLR_den-91k_contrast-faceVsHouse_stat-z_statmap"
    ours, _ = _map(func, stem)
    dof = json.loads((func / f"{stem}.json").read_text())["DegreesOfFreedom"]
    z = _fixed_z(effects, variances, dof)  # fixed effects of nilearn's run estimates
    assert np.abs(ours[keep] - z).max() < 1e-3


def _fixed_z(effects, variances, dof) -> np.ndarray:
    """Precision-weighted fixed effects (the DESIGN convention) and its z at ``dof``."""
    from scipy import stats

    weights = 1.0 / np.array(variances)
    variance = 1.0 / weights.sum(axis=0)
    effect = variance * (weights * np.array(effects)).sum(axis=0)
    return stats.norm.isf(stats.t.sf(effect / np.sqrt(variance), dof))


def test_several_densities_need_a_choice(cifti_run, tmp_path, capsys):
    bids = tmp_path / "bids"
    make_cifti_dataset(bids)
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    for path in func.glob("*_den-91k_bold.dtseries.nii"):
        (func / path.name.replace("den-91k", "den-170k")).write_bytes(path.read_bytes())
    assert _run(bids, tmp_path / "out", "--dry-run") == 3
    assert "--space fsLR:den-91k" in capsys.readouterr().err
    args = [str(bids), str(tmp_path / "out3"), "participant", "--space", "fsLR:den-91k"]
    assert main([*args, "--skip-bids-validator", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "run-1_space-fsLR_den-91k_bold.dtseries.nii; no mask" in printed


def test_brain_models_differing_between_runs_name_the_file(tmp_path):
    axis = brain_models()
    first, second = tmp_path / "a_bold.dtseries.nii", tmp_path / "b_bold.dtseries.nii"
    write_dtseries(first, np.ones((4, len(axis))), axis)
    other = axis[: len(axis) - 5]
    write_dtseries(second, np.ones((4, len(other))), other)
    with pytest.raises(InputError, match=r"b_bold\.dtseries\.nii.*BrainModelAxis"):
        cifti_geometry([(path, cifti_header(path).brain_models) for path in (first, second)])
    with pytest.raises(InputError, match=r"b_bold\.dtseries\.nii.*BrainModelAxis"):
        read_cifti_series(second, CiftiGeometry.whole(axis))


def test_series_step_gives_the_time_step_in_seconds(tmp_path):
    axis = brain_models()
    path = tmp_path / "x_bold.dtseries.nii"
    write_dtseries(path, np.ones((3, len(axis))), axis, step_s=0.8)
    assert cifti_header(path).time_step_s == pytest.approx(0.8)
    assert cifti_header(path).n_volumes == 3


def test_methods_text_speaks_of_grayordinates(cifti_run):
    text = " ".join((cifti_run["out"] / "logs" / "CITATION.md").read_text().split())
    assert "estimated at every grayordinate" in text
    assert "voxel's time series" not in text and "brain masks" not in text


def test_bidsignore_hides_the_surface_and_cifti_outputs(cifti_run):
    patterns = (cifti_run["out"] / ".bidsignore").read_text().split()
    for pattern in ("*_statmap.dscalar.nii", "*_mask.dscalar.nii", "*_statmap.func.gii"):
        assert pattern in patterns


def test_fslr_without_cifti_series_says_what_was_looked_for(cifti_run, tmp_path, capsys):
    args = [str(cifti_run["bids"]), str(tmp_path / "out"), "participant", "--space"]
    assert main([*args, "fsLR:den-170k", "--skip-bids-validator"]) == 3
    assert "den-91k" in capsys.readouterr().err  # the density available


def test_cifti_smoothing_without_a_mesh_says_where_it_looked(cifti_run, tmp_path, capsys):
    empty = tmp_path / "meshes"
    empty.mkdir()
    code = _run(
        cifti_run["bids"],
        tmp_path / "out",
        "--smoothing-fwhm",
        "4",
        "--surface-mesh-dir",
        str(empty),
    )
    assert code == 3
    err = capsys.readouterr().err
    assert (
        "--smoothing-fwhm 4" in err and "no mid-thickness mesh pair found for --space fsLR" in err
    )
    assert str(empty) in err and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("*_statmap.dscalar.nii"))


def test_structures_are_smoothed_apart_when_read(tmp_path):
    from bids_glm.demo.surface_mesh import fibonacci_sphere, placed, write_mesh
    from bids_glm.image.mesh import MeshFiles

    axis = brain_models()
    meshes = []
    for hemi, n in zip("LR", N_CORTEX.values(), strict=True):
        meshes.append(tmp_path / f"hemi-{hemi}_midthickness.surf.gii")
        write_mesh(meshes[-1], placed(fibonacci_sphere(n), hemi), hemi)
    geometry = CiftiGeometry.whole(axis, MeshFiles(*meshes))
    rng = np.random.default_rng(1)
    data = (100 + rng.standard_normal((6, len(axis)))).astype(np.float32)
    thalamus = np.arange(len(axis))[
        next(s for n, s, _ in axis.iter_structures() if "THALAMUS" in n)
    ]
    bumped = data.copy()
    bumped[:, thalamus] += 50.0 * rng.standard_normal((6, thalamus.size)).astype(np.float32)
    read = []
    for i, values in enumerate((data, bumped)):
        write_dtseries(tmp_path / f"{i}_bold.dtseries.nii", values, axis)
        read.append(read_cifti_series(tmp_path / f"{i}_bold.dtseries.nii", geometry, 6.0).data)
    others = np.setdiff1d(np.arange(len(axis)), thalamus)
    np.testing.assert_array_equal(read[0][:, others], read[1][:, others])  # nothing leaks out
    assert not np.allclose(read[0][:, thalamus], read[1][:, thalamus])
    assert read[0].std(axis=0).mean() < data.std(axis=0).mean()  # it was smoothed


def test_each_series_header_is_parsed_once(tmp_path, monkeypatch):
    from nibabel.cifti2.parse_cifti2 import Cifti2Extension

    make_cifti_dataset(tmp_path / "bids")
    record = tmp_path / "parsed.txt"  # a file: discovery runs in a forked process
    unmangle = Cifti2Extension._unmangle

    def counted(self, value: bytes):
        if b"CIFTI_INDEX_TYPE_SERIES" in value:  # a dense series, not a written map
            with record.open("a") as stream:
                stream.write("parsed\n")
        return unmangle(self, value)

    monkeypatch.setattr(Cifti2Extension, "_unmangle", counted)
    assert _run(tmp_path / "bids", tmp_path / "out", "--no-pdf", "--n-cpus", "1") == 0
    assert record.read_text().split() == ["parsed", "parsed"]  # the two runs, once each
