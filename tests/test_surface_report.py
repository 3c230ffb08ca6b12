"""The participant report of surface data: maps on the mesh, peak-vertex tables, no-mesh path."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import matplotlib.image
import nibabel as nib
import numpy as np
import pytest
from mesh_helpers import geodesic_patch, icosphere, make_mesh_dataset, write_surface
from test_report import CHROMIUM_FLAGS

from bids_glm.cli.main import main
from bids_glm.derivatives import naming
from bids_glm.glm.surface_clusters import (
    HemisphereMap,
    structure_peak_table,
    surface_cluster_table,
    threshold_surface,
)
from bids_glm.image.mesh import MeshFiles
from bids_glm.report import collect
from bids_glm.report.surface_views import NO_MESH, read_cifti_scalar, surface_contrast_view
from bids_glm.report.views import ReportOptions

MESH = icosphere(4, radius_mm=60.0)
PATCHES = {"L": geodesic_patch(MESH, 100, 12.0), "R": geodesic_patch(MESH, 700, 12.0)}
MESH_NAME = "tpl-fsaverage_hemi-{}_den-10k_midthickness.surf.gii"


def test_peak_table_of_a_planted_patch():
    patch = PATCHES["L"]
    z_left = np.where(np.isin(np.arange(MESH.n_vertices), patch), 4.0, 0.5)
    z_left[patch[3]] = 6.0  # the peak
    z_right = np.full(MESH.n_vertices, 0.5)
    z_right[:40] = 0.0  # not analysed
    hemis = [HemisphereMap("L", z_left, MESH), HemisphereMap("R", z_right, MESH)]
    thresholded, threshold = threshold_surface(hemis, "fpr", 0.001)
    assert threshold.z_threshold == pytest.approx(3.090, abs=1e-3)
    table = surface_cluster_table(thresholded, hemis)
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["Cluster ID"], row["Hemisphere"], row["Vertex"]) == ("1", "L", patch[3])
    np.testing.assert_allclose(row[["X", "Y", "Z"]].astype(float), MESH.vertices_mm[patch[3]])
    assert row["Peak Stat"] == 6.0
    assert row["Cluster Size (vertices)"] == patch.size
    assert row["Cluster Size (mm2)"] == pytest.approx(MESH.vertex_areas_mm2()[patch].sum())
    # a cluster extent larger than the patch removes it; without a mesh, no sizes
    gone, _ = threshold_surface(hemis, "fpr", 0.001, cluster_extent=patch.size + 1)
    assert not np.any(gone[0])
    bare = [HemisphereMap(h.hemisphere, h.z_values) for h in hemis]
    peaks = surface_cluster_table(threshold_surface(bare, "fpr", 0.001)[0], bare)
    assert peaks.iloc[0]["Vertex"] == patch[3] and peaks["Cluster Size (mm2)"].isna().all()
    assert len(peaks) == 20  # the highest suprathreshold vertices


def test_structure_peak_table():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-10, -20, -30)
    ijk = np.array([[1, 1, 1], [1, 1, 2], [1, 2, 2], [3, 3, 3]])
    table = structure_peak_table(
        [("thalamus_left", np.array([1.0, 4.0, 3.5, 0.2]), ijk, affine)], 3.1
    )
    row = table.iloc[0]
    assert (row["X"], row["Y"], row["Z"]) == (-8.0, -18.0, -26.0)
    assert (row["Peak Stat"], row["Voxels Above"]) == (4.0, 2)
    assert row["Volume Above (mm3)"] == pytest.approx(16.0)


def _participant(bids, out, *extra) -> int:
    argv = [str(bids), str(out), "participant", "--space", "fsaverage5", "--skip-bids-validator"]
    argv += ["--noise-model", "ols", "--no-pdf", "--work-dir", str(out.parent / "work")]
    return main([*argv, "-q", *extra])


@pytest.fixture(scope="module")
def surface_reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("surfreport")
    make_mesh_dataset(root / "bids", MESH, PATCHES, "fsaverage5")
    for hemi in ("L", "R"):
        write_surface(root / "meshes" / MESH_NAME.format(hemi), MESH)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TEMPLATEFLOW_HOME", str(root / "no-templateflow"))
        with_mesh = _participant(
            root / "bids",
            root / "out",
            "--surface-mesh-dir",
            str(root / "meshes"),
            "--report-run-maps",
        )
        without = _participant(root / "bids", root / "bare")
    assert with_mesh == 0 and without == 0
    return root


def test_report_draws_maps_on_the_mesh_and_tabulates_peaks(surface_reports):
    html = (surface_reports / "out" / "sub-01.html").read_text()
    assert "thresholded z on the cortex, lateral and medial views" in html
    assert 'class="clusters surface"' in html
    assert NO_MESH not in html
    assert "face (run-2)" in html  # run-level maps drawn too (--report-run-maps)
    assert re.search(r"<td>\d+ of 5124 vertices analysed</td>", html)  # 2 x 2562, wall out
    assert MESH_NAME.format("L") in html and "mean BOLD image not recorded" not in html
    record = collect.read_participant(
        surface_reports / "out", collect.participant_manifests(surface_reports / "out", "01")
    )
    (unit,) = record.units
    assert unit.meshes is not None and unit.meshes.left.name == MESH_NAME.format("L")
    face = next(m for m in unit.subject_maps if m.label == "face")
    assert face.on_surface and len(face.surface_paths) == 2
    view = surface_contrast_view(face, unit.meshes, ReportOptions(), "face")
    first_two = {(r["hemi"], int(r["vertex"])) for r in view["surface_rows"][:2]}
    assert {h for h, _ in first_two} == {"L", "R"}  # one planted patch per hemisphere
    for hemi, vertex in first_two:
        assert vertex in PATCHES[hemi]
        row = next(r for r in view["surface_rows"] if r["hemi"] == hemi)
        assert int(row["vertices"]) >= 0.8 * PATCHES[hemi].size
        assert float(row["mm2"]) >= 0.8 * MESH.vertex_areas_mm2()[PATCHES[hemi]].sum()


def test_report_without_a_mesh_shows_the_table_and_a_histogram(surface_reports):
    html = (surface_reports / "bare" / "sub-01.html").read_text()
    assert NO_MESH in html
    assert "histogram of z over the analysed vertices" in html
    assert 'class="clusters surface"' in html
    assert "lateral and medial views" not in html


def _screenshot(chromium, page, tmp_path, size):
    screenshot = tmp_path / f"{page.stem}.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            f"--window-size={size}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return (matplotlib.image.imread(screenshot)[..., :3] * 255).astype(int)


def test_surface_report_in_headless_chromium(surface_reports, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium (Debian package chromium) is not installed")
    html = surface_reports / "out" / "sub-01.html"
    pixels = _screenshot(chromium, html, tmp_path, "1200,2400")
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100
    # the surface figure itself, as the report embeds it
    alt = 'alt="face: thresholded z on the cortex'
    uri = re.search(
        r'<img src="data:image/svg\+xml;base64,([^"]+)" ' + re.escape(alt), html.read_text()
    )
    figure = tmp_path / "figure.svg"
    figure.write_bytes(base64.b64decode(uri.group(1)))
    pixels = _screenshot(chromium, figure, tmp_path, "800,700")
    hot = (pixels[..., 0] > 180) & (pixels[..., 2] < 80)  # the red-yellow overlay
    grey = (np.ptp(pixels, axis=-1) < 8) & (pixels[..., 0] > 80) & (pixels[..., 0] < 235)
    assert hot.sum() > 300  # the planted patches are drawn
    assert grey.sum() > 50000  # on the shaded meshes of four views


def _dscalar(path, cortex_z, mask, voxels_z, ijk, affine):
    """A one-map CIFTI dscalar: both cortices (vertices in ``mask``) and one voxel structure."""
    cortex = [
        nib.cifti2.BrainModelAxis.from_mask(mask, name=name)
        for name in ("CortexLeft", "CortexRight")
    ]
    volume = np.zeros((10, 10, 10), dtype=bool)
    volume[tuple(ijk.T)] = True
    thalamus = nib.cifti2.BrainModelAxis.from_mask(volume, name="ThalamusLeft", affine=affine)
    models = cortex[0] + cortex[1] + thalamus
    data = np.concatenate([cortex_z["L"][mask], cortex_z["R"][mask], voxels_z])[None]
    scalars = nib.cifti2.ScalarAxis(["z"])
    header = nib.cifti2.Cifti2Header.from_axes((scalars, models))
    image = nib.cifti2.Cifti2Image(data.astype(np.float32), header)
    image.nifti_header.set_intent("ConnDenseScalar")
    image.to_filename(path)


def test_cifti_map_cortex_on_the_mesh_and_a_structure_table(tmp_path):
    folder = tmp_path / "sub-01" / "func"
    folder.mkdir(parents=True)
    mask = MESH.vertices_mm[:, 0] < 45.0  # a medial wall absent from the grayordinates
    z = {
        "L": np.where(np.isin(np.arange(MESH.n_vertices), PATCHES["L"]), 5.0, 0.3),
        "R": np.full(MESH.n_vertices, 0.3),
    }
    ijk = np.array([[2, 2, 2], [2, 3, 2], [5, 5, 5]])
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    name = "sub-01_task-faces_space-fsLR_den-91k_contrast-face_stat-z_statmap.dscalar.nii"
    _dscalar(folder / name, z, mask, np.array([4.5, 1.0, 0.2]), ijk, affine)
    entities = {"sub": "01", "task": "faces", "space": "fsLR", "den": "91k"}
    (stat_map,) = collect.find_z_maps(folder, entities)
    assert stat_map.on_surface and naming.is_cifti_map(stat_map.z_path)
    grayordinates = read_cifti_scalar(stat_map.z_path)
    assert grayordinates.cortex["L"].size == MESH.n_vertices
    assert np.all(grayordinates.cortex["L"][~mask] == 0)
    meshes = MeshFiles(
        write_surface(tmp_path / "L.surf.gii", MESH), write_surface(tmp_path / "R.surf.gii", MESH)
    )
    view = surface_contrast_view(stat_map, meshes, ReportOptions(), "face")
    assert view["figures"][0].uri and not view["note"]
    patch_in_cifti = np.intersect1d(PATCHES["L"], np.flatnonzero(mask))
    assert view["surface_rows"][0]["hemi"] == "L"
    assert int(view["surface_rows"][0]["vertices"]) == patch_in_cifti.size
    (structure,) = view["structure_rows"]
    assert structure["structure"] == "thalamus_left"
    assert (structure["x"], structure["y"], structure["z"]) == ("4", "4", "4")
    assert (structure["peak"], structure["above"], structure["voxels"]) == ("4.50", "1", "3")
    assert structure["mm3"] == "8"


def test_cifti_report_draws_the_cortex_on_the_fslr_meshes(tmp_path, monkeypatch):
    """A CIFTI participant level records the fsLR meshes (TemplateFlow) for its report."""
    from bids_glm.demo.surface_dataset import make_surface_demo

    templateflow = tmp_path / "templateflow"
    make_surface_demo(
        tmp_path / "bids",
        "fsLR",
        templateflow_dir=templateflow,
        n_subjects=1,
        n_runs=1,
        n_volumes=80,
        mesh_size=1500,
    )
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(templateflow))
    out = tmp_path / "out"
    argv = [str(tmp_path / "bids"), str(out), "participant", "--space", "fsLR"]
    argv += ["--skip-bids-validator", "--noise-model", "ols", "--no-pdf", "-q"]
    assert main(argv) == 0
    (unit,) = collect.read_participant(out, collect.participant_manifests(out, "01")).units
    assert unit.meshes.left.parent == templateflow / "tpl-fsLR"
    html = (out / "sub-01.html").read_text()
    assert "face: thresholded z on the cortex, lateral and medial views" in html
    assert 'class="clusters structures"' in html and "thalamus_left" in html


def test_surface_cluster_tables_are_written_and_read_by_the_report(surface_reports):
    import json

    import pandas as pd

    from bids_glm.glm.surface_clusters import SURFACE_TABLE_DTYPES

    folder = surface_reports / "out" / "sub-01" / "func"
    entities = {"sub": "01", "task": "faces", "space": "fsaverage5"}
    path = naming.clusters_path(folder, entities, "face")
    table = pd.read_csv(path, sep="\t", na_values="n/a", dtype=SURFACE_TABLE_DTYPES)
    assert tuple(table.columns) == tuple(SURFACE_TABLE_DTYPES)
    for hemi in ("L", "R"):  # one planted patch per hemisphere, found as its cluster
        row = table[table["Hemisphere"] == hemi].iloc[0]
        assert row["Vertex"] in PATCHES[hemi]
        assert row["Cluster Size (vertices)"] >= 0.8 * PATCHES[hemi].size
    sidecar = json.loads(naming.sidecar_path(path).read_text())
    assert sidecar["Connectivity"] == "mesh edges" and sidecar["ClusterExtentVertices"] == 0
    assert not naming.clusters_path(
        surface_reports / "bare" / "sub-01" / "func", entities, "face"
    ).exists()  # no mesh, no adjacency: no table written
    # the report shows the written table when made with its threshold, else its own
    (unit,) = collect.read_participant(
        surface_reports / "out", collect.participant_manifests(surface_reports / "out", "01")
    ).units
    face = next(m for m in unit.subject_maps if m.label == "face")
    assert face.clusters_path == path
    marked = table.copy()
    marked.loc[0, "Peak Stat"] = 99.0
    marked.to_csv(path, sep="\t", index=False, na_rep="n/a")
    view = surface_contrast_view(face, unit.meshes, ReportOptions(), "face", face.clusters_path)
    assert view["surface_rows"][0]["peak"] == "99.00"
    other = surface_contrast_view(
        face, unit.meshes, ReportOptions(alpha=0.0001), "face", face.clusters_path
    )
    assert other["surface_rows"][0]["peak"] != "99.00"
    table.to_csv(path, sep="\t", index=False, na_rep="n/a")


def test_fsnative_group_report_says_why_there_is_no_picture(tmp_path, monkeypatch):
    import html as html_text

    from bids_glm.report.surface_views import NO_COMMON_MESH

    bids = tmp_path / "bids"
    make_mesh_dataset(bids, MESH, PATCHES, "fsnative", seed=0)
    other = make_mesh_dataset(tmp_path / "other", MESH, PATCHES, "fsnative", seed=1)
    assert other  # its sub-01 becomes sub-02
    for source in sorted((tmp_path / "other").rglob("sub-01*")):
        if source.is_file():
            relative = str(source.relative_to(tmp_path / "other")).replace("sub-01", "sub-02")
            target = bids / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    for hemi in ("L", "R"):  # each participant's own meshes (fMRIPrep's anat folder)
        for subject in ("01", "02"):
            anat = bids / "derivatives" / "fmriprep" / f"sub-{subject}" / "anat"
            write_surface(anat / f"sub-{subject}_hemi-{hemi}_midthickness.surf.gii", MESH)
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "no-templateflow"))
    out = tmp_path / "out"
    common = ["--space", "fsnative", "--skip-bids-validator", "--no-pdf", "-q"]
    assert main([str(bids), str(out), "participant", *common, "--noise-model", "ols"]) == 0
    assert (out / "sub-02.html").is_file()
    assert main([str(bids), str(out), "group", *common]) == 0
    html = html_text.unescape((out / "group.html").read_text())
    assert NO_COMMON_MESH in html and NO_MESH not in html
    assert "histogram of z over the analysed vertices" in html
    assert "lateral and medial views" not in html
