"""The surface demo end to end: planted patches found on GIfTI and CIFTI data, group level.

Small meshes keep it quick (icosphere order 3: 642 vertices per hemisphere; a Fibonacci
sphere of 1500 points); the demo's default sizes are checked on the meshes alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from bids_glm.cli.demo import main as demo_main
from bids_glm.cli.main import main
from bids_glm.demo.surface_dataset import PATCHES, make_surface_demo
from bids_glm.demo.surface_mesh import fibonacci_sphere, icosphere, template_mesh_path
from bids_glm.derivatives import naming
from bids_glm.image.map_files import read_map

MESH_SIZES = {"fsaverage5": 3, "fsLR": 1500}
EXTENSIONS = {"fsaverage5": ".func.gii", "fsLR": ".dscalar.nii"}


def _old_generation(bids: Path) -> None:
    """Rename run 2's GIfTIs to fMRIPrep's older order: ``..._space-X_hemi-L_bold``."""
    for path in bids.glob("derivatives/fmriprep/sub-*/func/*_run-2_hemi-*"):
        hemi = path.name.split("_hemi-")[1][0]
        new = path.name.replace(f"_hemi-{hemi}_space-fsaverage5", f"_space-fsaverage5_hemi-{hemi}")
        path.rename(path.with_name(new))


@pytest.fixture(scope="module", params=sorted(MESH_SIZES))
def demo(request, tmp_path_factory):
    space = request.param
    root = tmp_path_factory.mktemp(space)
    truth = make_surface_demo(
        root / "bids",
        space,
        templateflow_dir=root / "templateflow",
        n_subjects=2,
        n_volumes=100,
        mesh_size=MESH_SIZES[space],
    )
    if space == "fsaverage5":
        _old_generation(root / "bids")
    out = root / "out"
    args = [str(root / "bids"), str(out), "--space", space, "--skip-bids-validator", "--no-pdf"]
    codes = [main([*args[:2], "participant", *args[2:], "--noise-model", "ols"])]
    codes.append(main([*args[:2], "group", *args[2:]]))
    return {"space": space, "root": root, "out": out, "truth": truth, "codes": codes}


def _z(demo: dict, folder: Path, entities: dict, contrast: str) -> np.ndarray:
    if demo["space"] == "fsLR":
        entities = {**entities, "den": "91k"}
    entities = naming.subject_level_entities({**entities, "space": demo["space"]})
    path = naming.stat_map_path(folder, entities, "z", contrast=contrast)
    path = naming.with_extension(path, EXTENSIONS[demo["space"]])
    return read_map(naming.map_part_files(path))[0]


def test_planted_patches_are_found_in_their_hemisphere_only(demo):
    assert demo["codes"] == [0, 0]
    truth = demo["truth"]
    for subject in truth["subjects"]:
        folder = demo["out"] / f"sub-{subject}" / "func"
        for condition, columns in truth["planted"].items():
            z = _z(demo, folder, {"sub": subject, "task": "faces"}, condition)
            planted = np.zeros(z.size, dtype=bool)
            planted[columns] = True
            assert np.mean(z[planted] > 3.1) >= 0.8, (subject, condition)
            analysed = z != 0  # the medial wall is excluded, written as 0
            assert np.mean(z[~planted & analysed] > 3.1) < 0.01, (subject, condition)
    # face is planted in the left hemisphere (first half of the GIfTI vector) only
    if demo["space"] == "fsaverage5":
        assert max(truth["planted"]["face"]) < truth["n_columns"] // 2
        assert min(truth["planted"]["house"]) >= truth["n_columns"] // 2


def test_group_level_runs_on_surface_maps(demo):
    group = demo["out"] / "group"
    maps = sorted(p.name for p in group.glob(f"*_stat-z_statmap{EXTENSIONS[demo['space']]}"))
    assert maps, list(group.iterdir())
    if demo["space"] == "fsaverage5":
        assert all("_hemi-" in name for name in maps)
    z = _z(demo, group, {"task": "faces"}, "face")
    planted = np.zeros(z.size, dtype=bool)
    planted[demo["truth"]["planted"]["face"]] = True
    assert z[planted].mean() > z[~planted].mean() + 1.0
    sidecar = json.loads(next(group.glob("*_stat-z_statmap.json")).read_text())
    assert sidecar["Subjects"] == ["sub-01", "sub-02"]


def test_meshes_are_written_with_templateflow_names(demo):
    template = "fsLR" if demo["space"] == "fsLR" else "fsaverage"
    for hemi in ("L", "R"):
        path = template_mesh_path(demo["root"] / "templateflow", template, hemi)
        coords, faces = nib.load(path).agg_data()
        assert coords.shape[1] == 3 and faces.shape[1] == 3
        assert np.sign(coords[:, 0].mean()) == (-1 if hemi == "L" else 1)


def test_default_meshes_have_the_template_vertex_counts():
    assert icosphere(5).vertices.shape == (10242, 3)  # fsaverage5
    sphere = fibonacci_sphere(32492)  # fsLR 32k
    assert sphere.vertices.shape == (32492, 3)
    assert len(sphere.vertices) - len(sphere.faces) / 2 == 2  # Euler: a closed sphere


def test_demo_command_generates_a_surface_dataset(tmp_path, capsys):
    assert demo_main([str(tmp_path), "--space", "fsaverage5", "--subjects", "1", "--no-run"]) == 0
    func = tmp_path / "bids" / "derivatives" / "fmriprep" / "sub-01" / "func"
    assert (func / "sub-01_task-faces_run-1_hemi-L_space-fsaverage5_bold.func.gii").is_file()
    mesh = tmp_path / "templateflow" / "tpl-fsaverage"
    assert (mesh / "tpl-fsaverage_hemi-R_den-10k_midthickness.surf.gii").is_file()


MARGIN_RAD = 0.25  # beyond a patch's edge: where 6 mm smoothing may still lift z


@pytest.fixture(scope="module")
def smoothed_cifti(tmp_path_factory):
    """The CIFTI demo (one subject) fitted with 6 mm smoothing along the demo's meshes."""
    root = tmp_path_factory.mktemp("fsLR_smoothed")
    truth = make_surface_demo(
        root / "bids",
        "fsLR",
        templateflow_dir=root / "tf",
        n_subjects=1,
        n_volumes=100,
        mesh_size=MESH_SIZES["fsLR"],
    )
    args = [str(root / "bids"), str(root / "out"), "participant", "--space", "fsLR"]
    args += ["--skip-bids-validator", "--no-pdf", "--noise-model", "ols"]
    args += ["--smoothing-fwhm", "6", "--surface-mesh-dir", str(root / "tf" / "tpl-fsLR")]
    return {"code": main(args), "out": root / "out", "truth": truth, "space": "fsLR"}


def _near_patch(condition: str) -> np.ndarray:
    """Grayordinates of the demo's cortex within the patch of ``condition`` plus a margin."""
    from bids_glm.demo import surface_dataset as demo_data

    sphere = fibonacci_sphere(MESH_SIZES["fsLR"])
    axis = demo_data.brain_models(sphere)
    hemi, centre = demo_data.PATCHES[condition]
    direction = np.asarray(centre) / np.linalg.norm(centre)
    near = np.zeros(len(axis), dtype=bool)
    cortex = f"CIFTI_STRUCTURE_CORTEX_{'LEFT' if hemi == 'L' else 'RIGHT'}"
    for name, where, model in axis.iter_structures():
        if name == cortex:
            angle = np.arccos(np.clip(sphere.vertices[model.vertex] @ direction, -1, 1))
            near[np.arange(len(axis))[where]] = angle < demo_data.PATCH_RADIUS_RAD + MARGIN_RAD
    return near


def test_smoothed_cifti_finds_each_patch_in_cortex_and_its_structure_only(smoothed_cifti):
    from bids_glm.demo.surface_dataset import SUBCORTICAL_PLANTED

    assert smoothed_cifti["code"] == 0
    folder = smoothed_cifti["out"] / "sub-01" / "func"
    for condition, columns in smoothed_cifti["truth"]["planted"].items():
        z = _z(smoothed_cifti, folder, {"sub": "01", "task": "faces"}, condition)
        planted = np.zeros(z.size, dtype=bool)
        planted[columns] = True
        assert np.mean(z[planted] > 3.1) >= 0.8, condition
        outside = ~planted & ~_near_patch(condition) & (z != 0)
        assert np.mean(z[outside] > 3.1) < 0.01, condition
        if condition in SUBCORTICAL_PLANTED:  # the neighbouring block stays silent
            n_block = 64  # 4^3 voxels each, the last block of the axis
            assert np.mean(z[-n_block:] > 3.1) == 0.0, condition
            assert np.all(z[-2 * n_block : -n_block] > 3.1), condition
    sidecar = next(folder.glob("*contrast-face_stat-z_statmap.json"))
    assert json.loads(sidecar.read_text())["SmoothingFWHMmm"] == 6.0
    methods = " ".join((smoothed_cifti["out"] / "logs" / "CITATION.md").read_text().split())
    assert "Each cortex's grayordinates were smoothed along its mid-thickness mesh" in methods
    assert "no signal crossed between structures" in methods


def test_smoothed_cifti_writes_cortex_cluster_tables(smoothed_cifti):
    import pandas as pd

    from bids_glm.glm.surface_clusters import SURFACE_TABLE_DTYPES

    folder = smoothed_cifti["out"] / "sub-01" / "func"
    entities = {"sub": "01", "task": "faces", "space": "fsLR", "den": "91k"}
    for condition, (hemi, _) in PATCHES.items():
        path = naming.clusters_path(folder, entities, condition)
        table = pd.read_csv(path, sep="\t", na_values="n/a", dtype=SURFACE_TABLE_DTYPES)
        top = table.iloc[0]  # the planted patch: the highest cluster, in its hemisphere
        assert top["Hemisphere"] == hemi, condition
        assert top["Cluster Size (mm2)"] > 100.0, condition
