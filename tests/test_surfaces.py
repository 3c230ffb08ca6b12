"""Surface (fsaverage-like GIfTI) data end to end: discovery, reading, GLM, names, nilearn."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from mesh_helpers import face_house_events, face_response
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

from bids_glm.cli.main import main
from bids_glm.errors import InputError
from bids_glm.image.surface import (
    SurfaceGeometry,
    gifti_header,
    load_gifti_series,
    read_surface_series,
)
from bids_glm.inputs.surface_runs import hemisphere_pairs

TR_S = 2.0
N_VOLUMES = 90
N_VERTICES = (320, 300)  # left, right
MEDIAL_WALL = {"L": slice(0, 40), "R": slice(0, 30)}  # all zeros, as in fsaverage data
PLANTED = {"L": np.arange(100, 130), "R": np.arange(200, 220)}  # respond to "face" only
ENTITY = r"[A-Za-z0-9]+"
SURFACE_MAP = re.compile(
    rf"sub-01_task-faces(_run-{ENTITY})?_hemi-(L|R)_space-fsaverage5_contrast-{ENTITY}"
    r"_stat-(effect|variance|t|z|p)_statmap\.(func\.gii|json)$"
)


def _write_gifti(path: Path, series: np.ndarray, hemi: str, time_step_ms: float | None) -> None:
    """One darray per volume (intent TIME_SERIES for L, NONE for R: both occur)."""
    intent = "NIFTI_INTENT_TIME_SERIES" if hemi == "L" else "NIFTI_INTENT_NONE"
    meta = {"TimeStep": f"{time_step_ms:.6f}"} if time_step_ms else {}
    arrays = [
        GiftiDataArray(row.astype(np.float32), intent=intent, meta=GiftiMetaData(meta))
        for row in series
    ]
    structure = {"L": "CortexLeft", "R": "CortexRight"}[hemi]
    meta = GiftiMetaData({"AnatomicalStructurePrimary": structure})
    image = GiftiImage(darrays=arrays, meta=meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def make_surface_dataset(root: Path, seed: int = 0) -> dict:
    """Raw events + fMRIPrep-like surface derivatives: 2 runs, both naming generations.

    Run 1: ``..._run-1_hemi-L_space-fsaverage5_bold.func.gii`` with a sidecar TR;
    run 2: ``..._run-2_space-fsaverage5_hemi-L_bold.func.gii`` with only FreeSurfer's
    ``TimeStep`` (2000 ms) to give the TR.
    """
    rng = np.random.default_rng(seed)
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "surfaces", "BIDSVersion": "1.9.0"})
    )
    prep = root / "derivatives" / "fmriprep"
    prep.mkdir(parents=True)
    (prep / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "fMRIPrep",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep"}],
            }
        )
    )
    events = face_house_events(N_VOLUMES, TR_S)
    response = face_response(events, N_VOLUMES, TR_S)
    data = {}
    for run in (1, 2):
        raw_func = root / "sub-01" / "func"
        raw_func.mkdir(parents=True, exist_ok=True)
        events.to_csv(raw_func / f"sub-01_task-faces_run-{run}_events.tsv", sep="\t", index=False)
        func = prep / "sub-01" / "func"
        for hemi, n in zip(("L", "R"), N_VERTICES, strict=True):
            series = 100.0 + rng.standard_normal((N_VOLUMES, n))
            series[:, PLANTED[hemi]] += 3.0 * response[:, None]
            series[:, MEDIAL_WALL[hemi]] = 0.0
            data[(run, hemi)] = series.astype(np.float32)
            if run == 1:
                name = f"sub-01_task-faces_run-1_hemi-{hemi}_space-fsaverage5_bold"
                _write_gifti(func / f"{name}.func.gii", series, hemi, None)
                (func / f"{name}.json").write_text(json.dumps({"RepetitionTime": TR_S}))
            else:
                name = f"sub-01_task-faces_run-2_space-fsaverage5_hemi-{hemi}_bold"
                _write_gifti(func / f"{name}.func.gii", series, hemi, TR_S * 1000)
    return {"data": data, "events": events}


@pytest.fixture(scope="module")
def surface_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("surf")
    bids = root / "bids"
    truth = make_surface_dataset(bids)
    out = root / "out"
    code = main(
        [
            str(bids),
            str(out),
            "participant",
            "--space",
            "fsaverage5",
            "--skip-bids-validator",
            "--noise-model",
            "ols",
            "--work-dir",
            str(root / "work"),
            "--contrast",
            "faceVsHouse=face - house",
        ]
    )
    return {"code": code, "out": out, "bids": bids, **truth}


def _hemis(path_of) -> np.ndarray:
    """Both hemispheres' single-array GIfTI maps concatenated (L then R)."""
    return np.concatenate([load_gifti_series(path_of(h))[0] for h in ("L", "R")])


def _planted_mask() -> tuple[np.ndarray, np.ndarray]:
    planted = np.zeros(sum(N_VERTICES), dtype=bool)
    wall = np.zeros(sum(N_VERTICES), dtype=bool)
    planted[PLANTED["L"]] = True
    planted[N_VERTICES[0] + PLANTED["R"]] = True
    wall[MEDIAL_WALL["L"]] = True
    wall[N_VERTICES[0] + np.arange(N_VERTICES[1])[MEDIAL_WALL["R"]]] = True
    return planted, wall


def test_surface_participant_level_finds_planted_vertices(surface_run):
    assert surface_run["code"] == 0
    func = surface_run["out"] / "sub-01" / "func"
    stem = "sub-01_task-faces_hemi-{}_space-fsaverage5_contrast-faceVsHouse_stat-z_statmap"
    z = _hemis(lambda h: func / f"{stem.format(h)}.func.gii")
    planted, wall = _planted_mask()
    assert np.all(z[planted] > 3.1)
    null = ~planted & ~wall
    assert np.mean(np.abs(z[null]) > 3.1) < 0.01
    assert np.all(z[wall] == 0)  # excluded vertices (the medial wall) are written as 0
    # hemispheres are not swapped: the right file's planted vertices are the right ones
    right = load_gifti_series(func / f"{stem.format('R')}.func.gii")[0]
    assert np.all(right[PLANTED["R"]] > 3.1)
    assert nib.load(func / f"{stem.format('R')}.func.gii").meta["AnatomicalStructurePrimary"] == (
        "CortexRight"
    )


def test_surface_outputs_are_named_per_hemisphere(surface_run):
    func = surface_run["out"] / "sub-01" / "func"
    maps = [p.name for p in func.iterdir() if "_statmap." in p.name]
    assert maps and all(SURFACE_MAP.match(name) for name in maps), maps
    for run in ("run-1_", "run-2_", ""):
        for hemi in ("L", "R"):
            name = (
                f"sub-01_task-faces_{run}hemi-{hemi}_space-fsaverage5_contrast-faceVsHouse"
                "_stat-z_statmap"
            )
            assert (func / f"{name}.func.gii").is_file()
            sidecar = json.loads((func / f"{name}.json").read_text())
            assert sidecar["ContrastName"] == "faceVsHouse"
    assert not list(func.glob("*.nii.gz"))  # no volume written for surface data
    designs = sorted(func.glob("*_design.tsv"))
    assert len(designs) == 2
    # TR of run 2 came from the GIfTI TimeStep (ms -> s), not taken as 2000 s
    meta = json.loads(designs[1].with_suffix(".json").read_text())
    assert meta["RepetitionTime"] == 2.0


def test_surface_z_equals_nilearn_run_glm(surface_run):
    """Same (T, V) data, same design table: run-level z equal to nilearn's run_glm."""
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import mean_scaling, run_glm

    func = surface_run["out"] / "sub-01" / "func"
    _, wall = _planted_mask()
    for run in (1, 2):
        design = pd.read_csv(next(func.glob(f"*_run-{run}_*_design.tsv")), sep="\t")
        data = np.concatenate([surface_run["data"][(run, h)] for h in ("L", "R")], axis=1)
        keep = ~wall
        y, _ = mean_scaling(data[:, keep].astype(np.float64))
        labels, results = run_glm(y, design.to_numpy(), noise_model="ols")
        weights = (design.columns == "face").astype(float) - (design.columns == "house")
        weights = np.asarray(weights, dtype=float)
        expected = compute_contrast(labels, results, weights, "t").z_score()
        stem = f"sub-01_task-faces_run-{run}_hemi-{{}}_space-fsaverage5_contrast-faceVsHouse"
        ours = _hemis(lambda h, s=stem: func / f"{s.format(h)}_stat-z_statmap.func.gii")
        np.testing.assert_allclose(ours[keep], expected, atol=1e-3)


def test_hemisphere_pairs_need_both_hemispheres(tmp_path):
    left = tmp_path / "sub-01_task-x_run-1_hemi-L_space-fsaverage5_bold.func.gii"
    right = tmp_path / "sub-01_task-x_run-1_hemi-R_space-fsaverage5_bold.func.gii"
    old = tmp_path / "sub-01_task-x_run-2_space-fsaverage5_hemi-L_bold.func.gii"
    assert hemisphere_pairs([str(right), str(left)]) == ([(left, right)], [])
    pairs, ((lone, reason),) = hemisphere_pairs([str(left), str(right), str(old)])
    assert pairs == [(left, right)] and lone == old
    assert re.search(r"run-2_space-fsaverage5_hemi-L_bold\.func\.gii.*hemi-R", reason)
    pairs, ((lone, reason),) = hemisphere_pairs([str(left), str(right), str(tmp_path / "x.gii")])
    assert lone.name == "x.gii" and "expected a hemi-L or hemi-R entity" in reason


def test_a_run_with_one_hemisphere_fails_its_participant_alone(tmp_path, capsys):
    from bids_glm.demo.surface_dataset import make_surface_demo

    bids = tmp_path / "bids"
    make_surface_demo(bids, "fsaverage5", n_subjects=2, n_runs=1, n_volumes=40, mesh_size=3)
    func = bids / "derivatives" / "fmriprep" / "sub-02" / "func"
    (right,) = func.glob("*hemi-R*_bold.func.gii")
    right.unlink()
    args = [str(bids), str(tmp_path / "out"), "participant", "--space", "fsaverage5"]
    assert main([*args, "--no-reports"]) == 1  # one of two units failed
    err = capsys.readouterr().err
    assert "its other hemisphere is missing" in err and right.name in err
    assert list((tmp_path / "out" / "sub-01").rglob("*_statmap.func.gii"))
    assert not (tmp_path / "out" / "sub-02").exists()


def test_time_step_is_read_in_milliseconds(tmp_path):
    path = tmp_path / "sub-01_task-x_hemi-L_space-fsaverage5_bold.func.gii"
    _write_gifti(path, np.ones((3, 5)), "L", 1500.0)
    assert gifti_header(path).time_step_s == pytest.approx(1.5)


@pytest.mark.parametrize("one_array", [False, True])
def test_header_gives_the_shape_the_data_have(tmp_path, one_array):
    """Discovery reads shapes from the XML; they are those of the decoded series."""
    path = tmp_path / "sub-01_task-x_hemi-L_space-fsaverage5_bold.func.gii"
    series = np.arange(21, dtype=np.float32).reshape(3, 7)  # 3 volumes x 7 vertices
    if one_array:
        image = GiftiImage(darrays=[GiftiDataArray(series.T, intent="NIFTI_INTENT_NONE")])
        image.to_filename(path)
    else:
        _write_gifti(path, series, "L", None)
    header = gifti_header(path)
    assert (header.n_volumes, header.n_vertices) == load_gifti_series(path).shape == (3, 7)
    assert header.time_step_s is None


def test_constant_and_non_finite_vertices_are_unusable(tmp_path):
    series = np.random.default_rng(1).standard_normal((6, 8)) + 10
    series[:, 0] = 0.0
    series[2, 3] = np.nan
    paths = []
    for hemi in ("L", "R"):
        paths.append(tmp_path / f"sub-01_task-x_hemi-{hemi}_space-fsaverage5_bold.func.gii")
        _write_gifti(paths[-1], series, hemi, None)
    geometry = SurfaceGeometry.whole_surface((8, 8))
    read = read_surface_series(paths, geometry)
    assert read.data.shape == (6, 16)
    assert np.flatnonzero(~read.usable).tolist() == [0, 3, 8, 11]
    assert np.isfinite(read.data).all()
    with pytest.raises(InputError, match="vertices in hemisphere L"):
        read_surface_series(paths, SurfaceGeometry.whole_surface((9, 8)))
    with pytest.raises(InputError, match="needs the hemispheres' meshes"):
        read_surface_series(paths, geometry, smoothing_fwhm_mm=4.0)


@pytest.mark.parametrize("one_array", [False, True])
def test_a_run_is_read_into_its_analysed_vertices_and_kept_volumes(tmp_path, one_array):
    """Each hemisphere is copied volume by volume into one array: against nibabel's decoding
    (one array per volume, or one (V, T) array), with vertices left out of the analysis and
    dropped volumes; a right hemisphere of another length is named."""
    rng = np.random.default_rng(2)
    series = {"L": rng.standard_normal((9, 8)) + 10, "R": rng.standard_normal((9, 6)) + 20}
    paths = []
    for hemi, values in series.items():
        paths.append(tmp_path / f"sub-01_task-x_hemi-{hemi}_space-fsaverage5_bold.func.gii")
        if one_array:
            array = GiftiDataArray(values.T.astype(np.float32), intent="NIFTI_INTENT_NONE")
            GiftiImage(darrays=[array]).to_filename(paths[-1])
        else:
            _write_gifti(paths[-1], values, hemi, None)
    mask = np.ones(14, dtype=bool)
    mask[[0, 5, 9]] = False
    keep = np.ones(9, dtype=bool)
    keep[[0, 4]] = False
    geometry = SurfaceGeometry((8, 6), mask)
    read = read_surface_series(paths, geometry, keep_volumes=keep)
    decoded = [np.asarray(nib.load(p).agg_data(), dtype=np.float32) for p in paths]
    decoded = [d if d.shape[0] == 9 else d.T for d in decoded]  # agg_data of one array: (V, T)
    expected = np.concatenate(decoded, axis=1)[keep][:, mask]
    assert read.data.flags.c_contiguous and read.usable.all()
    np.testing.assert_array_equal(read.data, expected)
    with pytest.raises(InputError, match="9 volumes, but the model describes 8"):
        read_surface_series(paths, geometry, keep_volumes=keep[1:])
    short = tmp_path / "sub-01_task-x_hemi-R_space-fsaverage5_bold.func.gii"
    _write_gifti(short, series["R"][:7], "R", None)
    with pytest.raises(InputError, match=f"{short}: 7 volumes, but .* has 9"):
        read_surface_series(paths, geometry)


def test_smoothing_without_a_mesh_is_refused_for_surfaces(tmp_path, surface_run, monkeypatch):
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow"))  # no mesh there
    code = main(
        [
            str(surface_run["bids"]),
            str(tmp_path / "out"),
            "participant",
            "--space",
            "fsaverage5",
            "--skip-bids-validator",
            "--smoothing-fwhm",
            "4",
        ]
    )
    assert code == 3


def test_surface_fixed_effects_weight_runs_by_precision(surface_run):
    """Participant maps are the precision-weighted combination of the two runs' maps."""
    from scipy import stats

    func = surface_run["out"] / "sub-01" / "func"
    _, wall = _planted_mask()
    keep = ~wall

    def read(run: str, stat: str) -> np.ndarray:
        stem = f"sub-01_task-faces_{run}hemi-{{}}_space-fsaverage5_contrast-faceVsHouse"
        return _hemis(lambda h: func / f"{stem.format(h)}_stat-{stat}_statmap.func.gii")[keep]

    effects = np.array([read(f"run-{r}_", "effect") for r in (1, 2)], dtype=np.float64)
    variances = np.array([read(f"run-{r}_", "variance") for r in (1, 2)], dtype=np.float64)
    weights = 1.0 / variances
    variance = 1.0 / weights.sum(axis=0)
    effect = variance * (weights * effects).sum(axis=0)
    np.testing.assert_allclose(read("", "effect"), effect, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(read("", "variance"), variance, rtol=1e-4)
    dof = json.loads(
        (
            func / "sub-01_task-faces_hemi-L_space-fsaverage5_contrast-faceVsHouse_stat-z_statmap"
            ".json"
        ).read_text()
    )["DegreesOfFreedom"]
    z = stats.norm.isf(stats.t.sf(effect / np.sqrt(variance), dof))
    np.testing.assert_allclose(read("", "z"), z, atol=1e-3)


def test_surface_ar1_z_equals_nilearn_run_glm(surface_run, tmp_path):
    """AR(1) on surfaces: run-level z as nilearn's run_glm (ar1) on the same (T, V) data."""
    from nilearn.glm.contrasts import compute_contrast
    from nilearn.glm.first_level import mean_scaling, run_glm

    out = tmp_path / "out"
    args = [str(surface_run["bids"]), str(out), "participant", "--space", "fsaverage5"]
    assert main([*args, "--skip-bids-validator", "--noise-model", "ar1"]) == 0
    func = out / "sub-01" / "func"
    _, wall = _planted_mask()
    keep = ~wall
    design = pd.read_csv(next(func.glob("*_run-1_*_design.tsv")), sep="\t")
    data = np.concatenate([surface_run["data"][(1, h)] for h in ("L", "R")], axis=1)
    y, _ = mean_scaling(data[:, keep].astype(np.float64))
    labels, results = run_glm(y, design.to_numpy(), noise_model="ar1")
    weights = np.asarray(design.columns == "face", dtype=float)
    expected = compute_contrast(labels, results, weights, "t").z_score()
    stem = "sub-01_task-faces_run-1_hemi-{}_space-fsaverage5_contrast-face_stat-z_statmap"
    ours = _hemis(lambda h: func / f"{stem.format(h)}.func.gii")[keep]
    assert np.abs(ours - expected).max() < 1e-3


def test_dry_run_plans_surface_runs(surface_run, tmp_path, capsys):
    args = [str(surface_run["bids"]), str(tmp_path / "out"), "participant"]
    assert main([*args, "--space", "fsaverage5", "--skip-bids-validator", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "sub-01_task-faces_run-2_space-fsaverage5_hemi-R_bold.func.gii" in printed
    assert "no mask" in printed


def test_methods_text_describes_surfaces(surface_run):
    text = (surface_run["out"] / "logs" / "CITATION.md").read_text()
    assert "vertices of both hemispheres" in " ".join(text.split())
    assert "brain masks" not in text


# Files of one run of bids-examples' ds000001-fmriprep (an fMRIPrep 20.2 derivative dataset),
# sub-<s> and run-<r> filled in; its data files there are empty, generated here.
DS000001_RUN_FILES = (
    "AROMAnoiseICs.csv",
    "desc-MELODIC_mixing.tsv",
    "desc-confounds_timeseries.json",
    "desc-confounds_timeseries.tsv",
    "from-T1w_to-scanner_mode-image_xfm.txt",
    "from-scanner_to-T1w_mode-image_xfm.txt",
    "space-MNI152NLin2009cAsym_res-2_boldref.nii.gz",
    "space-MNI152NLin2009cAsym_res-2_desc-aparcaseg_dseg.nii.gz",
    "space-MNI152NLin2009cAsym_res-2_desc-aseg_dseg.nii.gz",
    "space-MNI152NLin2009cAsym_res-2_desc-brain_mask.json",
    "space-MNI152NLin2009cAsym_res-2_desc-brain_mask.nii.gz",
    "space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.json",
    "space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz",
    "space-MNI152NLin6Asym_desc-smoothAROMAnonaggr_bold.nii.gz",
    "space-fsaverage5_hemi-L_bold.func.gii",
    "space-fsaverage5_hemi-R_bold.func.gii",
    "space-fsnative_hemi-L_bold.func.gii",
    "space-fsnative_hemi-R_bold.func.gii",
)
DS000001_ANAT_FILES = ("hemi-L_midthickness.surf.gii", "hemi-R_midthickness.surf.gii")
DS000001_TASK = "balloonanalogrisktask"
FSNATIVE_VERTICES = {"10": (1500, 1480), "11": (1610, 1590)}  # per subject, as in fsnative


def make_ds000001_layout(root: Path, n_volumes: int = 6) -> Path:
    """The raw dataset (events, TR in the task sidecar) + ds000001-fmriprep's file names."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text('{"Name": "ds000001", "BIDSVersion": "1.4.0"}')
    (root / f"task-{DS000001_TASK}_bold.json").write_text('{"RepetitionTime": 2.0}')
    prep = root / "derivatives" / "fmriprep"
    prep.mkdir(parents=True)
    (prep / "dataset_description.json").write_text(
        json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.4.0", "DatasetType": "derivative"})
    )
    rng = np.random.default_rng(0)
    events = face_house_events(N_VOLUMES, TR_S)
    for subject, native in FSNATIVE_VERTICES.items():
        for name in DS000001_ANAT_FILES:
            (prep / f"sub-{subject}" / "anat").mkdir(parents=True, exist_ok=True)
            (prep / f"sub-{subject}" / "anat" / f"sub-{subject}_{name}").write_bytes(b"")
        for run in (1, 2, 3):
            stem = f"sub-{subject}_task-{DS000001_TASK}_run-{run}"
            raw = root / f"sub-{subject}" / "func"
            raw.mkdir(parents=True, exist_ok=True)
            events.to_csv(raw / f"{stem}_events.tsv", sep="\t", index=False)
            func = prep / f"sub-{subject}" / "func"
            func.mkdir(parents=True, exist_ok=True)
            for name in DS000001_RUN_FILES:
                path = func / f"{stem}_{name}"
                if name.endswith(".func.gii"):
                    hemi = name.split("hemi-")[1][0]
                    n = 10242 if "fsaverage5" in name else native["LR".index(hemi)]
                    _write_gifti(path, rng.standard_normal((n_volumes, n)) + 100, hemi, None)
                else:
                    path.write_text("{}" if name.endswith(".json") else "")
    return root


@pytest.mark.parametrize("space", ["fsaverage5", "fsnative"])
def test_ds000001_fmriprep_layout_is_discovered(tmp_path, space):
    from conftest import settings_for

    from bids_glm.inputs.layout import discover_runs

    bids = make_ds000001_layout(tmp_path / "bids")
    settings = settings_for(bids, tmp_path, space=space, skip_bids_validator=True)
    runs = discover_runs(settings).runs
    assert [(r.subject, r.entities["run"]) for r in runs] == [
        (s, r) for s in ("10", "11") for r in ("1", "2", "3")
    ]
    for run in runs:
        left, right = run.surface_paths
        assert f"_space-{space}_hemi-L_bold" in left.name and "_hemi-R_" in right.name
        assert (run.tr_s, run.n_volumes, run.mask_path) == (2.0, 6, None)
        assert run.confounds_path.name.endswith("desc-confounds_timeseries.tsv")
        assert run.events_path.name.endswith("_events.tsv")
        if space == "fsnative":
            assert gifti_header(right).n_vertices == FSNATIVE_VERTICES[run.subject][1]


def test_vertex_counts_differing_between_runs_name_the_file(surface_run, tmp_path, capsys):
    """A run on another mesh than the unit's first run: exit 3 naming its file."""
    import shutil

    bids = tmp_path / "bids"
    shutil.copytree(surface_run["bids"], bids)
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    other = func / "sub-01_task-faces_run-2_space-fsaverage5_hemi-R_bold.func.gii"
    _write_gifti(other, np.ones((N_VOLUMES, N_VERTICES[1] + 5)), "R", TR_S * 1000)
    args = [str(bids), str(tmp_path / "out"), "participant", "--space", "fsaverage5"]
    assert main([*args, "--skip-bids-validator"]) == 3
    err = capsys.readouterr().err
    assert other.name in err and "vertices" in err
