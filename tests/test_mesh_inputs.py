"""Where meshes come from, and surface data smoothed along them end to end."""

from __future__ import annotations

import numpy as np
import pytest
from mesh_helpers import (
    geodesic_patch,
    icosphere,
    make_mesh_dataset,
    write_surface,
)

from bids_glm.cli.main import main
from bids_glm.errors import InputError
from bids_glm.image.surface import load_gifti_series
from bids_glm.inputs.meshes import MeshQuery, find_meshes, require_meshes

MESH = icosphere(4, radius_mm=60.0)  # 2562 vertices, ~4.4 mm apart
PATCHES = {"L": geodesic_patch(MESH, 100, 12.0), "R": geodesic_patch(MESH, 700, 12.0)}
STEM = "sub-01_task-faces_hemi-{}_space-{}_contrast-face_stat-z_statmap.func.gii"


def _query(tmp_path, space="fsaverage5", **changes) -> MeshQuery:
    fields = {
        "space": space,
        "subject": "01",
        "session": None,
        "mesh_dir": None,
        "derivatives": (tmp_path / "fmriprep",),
        "templateflow_home": tmp_path / "templateflow",
        **changes,
    }
    return MeshQuery(**fields)


def _write_pair(folder, name) -> None:
    for hemi in ("L", "R"):
        write_surface(folder / name.format(hemi), MESH)


def test_template_meshes_from_the_templateflow_cache(tmp_path):
    tpl = tmp_path / "templateflow" / "tpl-fsaverage"
    _write_pair(tpl, "tpl-fsaverage_hemi-{}_den-10k_midthickness.surf.gii")
    _write_pair(tpl, "tpl-fsaverage_hemi-{}_den-41k_midthickness.surf.gii")
    found = find_meshes(_query(tmp_path)).files
    assert found.left.name == "tpl-fsaverage_hemi-L_den-10k_midthickness.surf.gii"
    assert found.right.name == "tpl-fsaverage_hemi-R_den-10k_midthickness.surf.gii"
    assert "den-41k" in find_meshes(_query(tmp_path, "fsaverage6")).files.left.name
    assert find_meshes(_query(tmp_path, "fsaverage")).files is None  # no den-164k
    fslr = tmp_path / "templateflow" / "tpl-fsLR"
    _write_pair(fslr, "tpl-fsLR_den-32k_hemi-{}_midthickness.surf.gii")  # entities' order
    assert find_meshes(_query(tmp_path, "fsLR")).files.left.parent == fslr


@pytest.mark.parametrize(
    "name",
    [
        "sub-01_hemi-{}_midthickness.surf.gii",  # fMRIPrep 23 and later
        "sub-01_acq-MPRAGE_run-1_hemi-{}_midthickness.surf.gii",  # fMRIPrep 20.2
        "sub-01_hemi-{}_space-fsnative_midthickness.surf.gii",
    ],
)
def test_fsnative_meshes_from_the_participants_anatomy(tmp_path, name):
    anat = tmp_path / "fmriprep" / "sub-01" / "anat"
    _write_pair(anat, name)
    _write_pair(anat, "sub-01_hemi-{}_space-fsLR_den-32k_midthickness.surf.gii")  # not these
    _write_pair(anat, "sub-01_hemi-{}_pial.surf.gii")
    found = find_meshes(_query(tmp_path, "fsnative")).files
    assert found.left.name == name.format("L") and found.right.name == name.format("R")
    assert find_meshes(_query(tmp_path, "fsnative", subject="02")).files is None
    session = find_meshes(_query(tmp_path, "fsnative", session="1")).files  # anat/ beside ses-
    assert session == found


def test_mesh_dir_comes_first_and_ambiguity_is_an_error(tmp_path):
    tpl = tmp_path / "templateflow" / "tpl-fsaverage"
    _write_pair(tpl, "tpl-fsaverage_hemi-{}_den-10k_midthickness.surf.gii")
    mine = tmp_path / "mine"
    _write_pair(mine, "lh_hemi-{}_midthickness.surf.gii")
    found = find_meshes(_query(tmp_path, mesh_dir=mine)).files
    assert found.left.parent == mine
    _write_pair(mine, "other_hemi-{}_midthickness.surf.gii")
    with pytest.raises(InputError, match="2 candidate hemi-L meshes"):
        find_meshes(_query(tmp_path, mesh_dir=mine))


def test_no_mesh_lists_every_place_searched(tmp_path):
    query = _query(tmp_path, "fsnative", mesh_dir=tmp_path / "mine", session="1")
    with pytest.raises(InputError) as error:
        require_meshes(query, "--smoothing-fwhm 6")
    message = str(error.value)
    for place in (
        tmp_path / "mine",
        tmp_path / "fmriprep" / "sub-01" / "ses-1" / "anat",
        tmp_path / "fmriprep" / "sub-01" / "anat",
    ):
        assert str(place) in message
    assert "nothing is downloaded" in message


def _run(bids, out, *extra, space="fsaverage5"):
    argv = [str(bids), str(out), "participant", "--space", space, "--skip-bids-validator"]
    argv += ["--noise-model", "ols", "--no-reports", "--work-dir", str(out.parent / "work")]
    return main([*argv, "-q", *extra])


@pytest.fixture(scope="module")
def mesh_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("meshdata")
    truth = make_mesh_dataset(root / "bids", MESH, PATCHES, "fsaverage5")
    meshes = root / "meshes"
    _write_pair(meshes, "tpl-fsaverage_hemi-{}_den-10k_midthickness.surf.gii")
    return {"root": root, "bids": root / "bids", "meshes": meshes, **truth}


def test_smoothed_surface_analysis_finds_the_planted_patches(mesh_dataset, capsys):
    root = mesh_dataset["root"]
    out = root / "smoothed"
    mesh_dir = ["--surface-mesh-dir", str(mesh_dataset["meshes"]), "--smoothing-fwhm", "6"]
    assert _run(mesh_dataset["bids"], root / "dry", *mesh_dir, "--dry-run") == 0
    assert "tpl-fsaverage_hemi-L_den-10k_midthickness.surf.gii" in capsys.readouterr().out
    assert _run(mesh_dataset["bids"], out, *mesh_dir) == 0
    func = out / "sub-01" / "func"
    z = {h: load_gifti_series(func / STEM.format(h, "fsaverage5"))[0] for h in ("L", "R")}
    distance = MESH.vertices_mm[:, None] - MESH.vertices_mm[None]
    wall = mesh_dataset["wall"]
    for hemi, patch in PATCHES.items():
        assert np.mean(z[hemi][patch] > 3.1) >= 0.8
        near = (np.linalg.norm(distance[:, patch], axis=2) < 12.0).any(axis=1)  # patch + FWHM*2
        assert np.mean(z[hemi][~near & ~wall] > 3.1) < 0.01
        assert np.all(z[hemi][wall] == 0)  # the medial wall stays out
        edges = MESH.edges()
        null_edges = edges[(~near & ~wall)[edges].all(axis=1)]
        neighbours = np.corrcoef(z[hemi][null_edges[:, 0]], z[hemi][null_edges[:, 1]])[0, 1]
        assert neighbours > 0.2  # white noise, smoothed: neighbours now correlate (0 unsmoothed)
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "mid-thickness mesh by heat diffusion" in citation


def test_smoothing_without_a_mesh_fails_before_any_fit(mesh_dataset, monkeypatch, capsys):
    root = mesh_dataset["root"]
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(root / "no-templateflow"))
    out = root / "nomesh"
    assert _run(mesh_dataset["bids"], out, "--smoothing-fwhm", "6") == 3
    error = capsys.readouterr().err
    assert "no mid-thickness mesh pair found for --space fsaverage5" in error
    assert str(root / "no-templateflow" / "tpl-fsaverage") in error
    assert not list(out.glob("sub-01/func/*statmap*"))


def test_mesh_with_other_vertex_count_names_both_files(mesh_dataset, tmp_path, capsys):
    small = tmp_path / "small"
    for hemi in ("L", "R"):
        write_surface(
            small / f"tpl-fsaverage_hemi-{hemi}_den-10k_midthickness.surf.gii", icosphere(2)
        )
    args = ["--surface-mesh-dir", str(small), "--smoothing-fwhm", "6"]
    assert _run(mesh_dataset["bids"], tmp_path / "out", *args) == 3
    error = capsys.readouterr().err
    assert "tpl-fsaverage_hemi-L_den-10k_midthickness.surf.gii: 162 vertices" in error
    assert "sub-01_task-faces_run-1_hemi-L_space-fsaverage5_bold.func.gii have 2562" in error


def test_fsnative_run_smoothed_along_the_participants_fmriprep_meshes(tmp_path, capsys):
    bids = tmp_path / "bids"
    make_mesh_dataset(bids, MESH, PATCHES, "fsnative")
    anat = bids / "derivatives" / "fmriprep" / "sub-01" / "anat"
    _write_pair(anat, "sub-01_hemi-{}_midthickness.surf.gii")
    _write_pair(anat, "sub-01_hemi-{}_space-fsLR_den-32k_midthickness.surf.gii")  # not these
    out = tmp_path / "out"
    assert _run(bids, out, "--smoothing-fwhm", "6", "--dry-run", space="fsnative") == 0
    printed = capsys.readouterr().out
    assert f"smoothed along the meshes {anat / 'sub-01_hemi-L_midthickness.surf.gii'}" in printed
    assert _run(bids, out, "--smoothing-fwhm", "6", space="fsnative") == 0
    z = load_gifti_series(out / "sub-01" / "func" / STEM.format("R", "fsnative"))[0]
    assert np.mean(z[PATCHES["R"]] > 3.1) >= 0.8
