"""Participant level end to end on the demo data: planted truth, nilearn, names, safety."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import make_read_only, make_writable, tree_digest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset, planted_mask

ENTITY = r"[A-Za-z0-9]+"
RUN_MAP = re.compile(
    rf"sub-{ENTITY}_task-{ENTITY}_run-{ENTITY}_space-{ENTITY}_contrast-{ENTITY}"
    r"_stat-(effect|variance|t|z|p)_statmap\.(nii\.gz|json)$"
)
SUBJECT_MAP = re.compile(
    rf"sub-{ENTITY}_task-{ENTITY}_space-{ENTITY}_contrast-{ENTITY}"
    r"_stat-(effect|variance|t|z|p)_statmap\.(nii\.gz|json)$"
)
DESIGN = re.compile(rf"sub-{ENTITY}_task-{ENTITY}_run-{ENTITY}_space-{ENTITY}_design\.(tsv|json)$")
MASK = re.compile(rf"sub-{ENTITY}_task-{ENTITY}_space-{ENTITY}_mask\.nii\.gz$")
MEAN = re.compile(rf"sub-{ENTITY}_task-{ENTITY}_space-{ENTITY}_desc-mean_boldref\.(nii\.gz|json)$")
CLUSTERS = re.compile(
    rf"sub-{ENTITY}_task-{ENTITY}_space-{ENTITY}_desc-{ENTITY}_clusters\.(tsv|json)$"
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo dataset (3 subjects x 2 runs), analysed once with default settings."""
    root = tmp_path_factory.mktemp("demo")
    bids = root / "bids"
    truth = make_demo_dataset(bids)
    digest_before = tree_digest(bids)
    make_read_only(bids)
    try:
        code = main(
            [
                str(bids),
                str(root / "out"),
                "participant",
                "--work-dir",
                str(root / "work"),
                "--contrast",
                "faceVsHouse=face - house",
            ]
        )
    finally:
        make_writable(bids)
    return {
        "root": root,
        "bids": bids,
        "out": root / "out",
        "truth": truth,
        "code": code,
        "digest_before": digest_before,
    }


def _subject_map(out: Path, subject: str, contrast: str, stat: str) -> np.ndarray:
    name = (
        f"sub-{subject}_task-faces_space-MNI152NLin2009cAsym_contrast-{contrast}"
        f"_stat-{stat}_statmap.nii.gz"
    )
    return np.asanyarray(nib.load(out / f"sub-{subject}" / "func" / name).dataobj)


def _analysis_mask(out: Path, subject: str) -> np.ndarray:
    name = f"sub-{subject}_task-faces_space-MNI152NLin2009cAsym_mask.nii.gz"
    return np.asanyarray(nib.load(out / f"sub-{subject}" / "func" / name).dataobj) > 0


def test_run_succeeds_and_input_is_untouched(demo):
    assert demo["code"] == 0
    assert tree_digest(demo["bids"]) == demo["digest_before"]


def test_methods_text_names_the_analysed_series_and_its_grid(demo):
    (bold,) = (demo["bids"] / "derivatives").rglob("sub-01_*run-1*_desc-preproc_bold.nii.gz")
    sizes_mm = {float(size) for size in nib.load(bold).header.get_zooms()[:3]}
    (size_mm,) = sizes_mm  # the demo's grid is isotropic
    text = " ".join((demo["out"] / "logs" / "CITATION.md").read_text().split())
    assert (
        "using the preprocessed BOLD series (`desc-preproc`) in `MNI152NLin2009cAsym` space, "
        f"on a grid of {size_mm:g} mm isotropic voxels." in text
    )
    manifest = demo["out"] / "logs" / "manifests"
    summary = json.loads(next(manifest.glob("sub-01_*.json")).read_text())["Summary"]
    assert summary["BoldVariant"] == ["desc-preproc"]
    assert summary["VoxelSizeMM"] == [size_mm] * 3


def test_planted_effects_are_found_and_null_voxels_are_quiet(demo):
    truth, out = demo["truth"], demo["out"]
    for subject in truth["subjects"]:
        mask = _analysis_mask(out, subject)
        for condition in truth["conditions"]:
            z = _subject_map(out, subject, condition, "z")
            planted = condition in truth["planted"]
            blob = planted_mask(truth, condition) if planted else np.zeros_like(mask)
            if planted:  # noise makes a few edge voxels dip: 95% above 5, every one above 3.1
                assert np.mean(z[blob] > 5) >= 0.95, (subject, condition, np.sort(z[blob])[:8])
                assert np.min(z[blob]) > 3.1, (subject, condition, np.min(z[blob]))
            outside = mask & ~blob
            false_positive_rate = np.mean(z[outside] > 3.1)
            assert false_positive_rate < 0.01, (subject, condition, false_positive_rate)


def test_contrast_of_planted_conditions_has_the_right_signs(demo):
    truth, out = demo["truth"], demo["out"]
    for subject in truth["subjects"]:
        z = _subject_map(out, subject, "faceVsHouse", "z")
        assert np.median(z[planted_mask(truth, "face")]) > 3
        assert np.median(z[planted_mask(truth, "house")]) < -3


def test_effect_size_estimates_the_planted_percent_signal_change(demo):
    truth, out = demo["truth"], demo["out"]
    for subject in truth["subjects"]:
        for condition, planted in truth["planted"].items():
            effect = _subject_map(out, subject, condition, "effect")
            estimate = np.median(effect[planted_mask(truth, condition)])
            assert estimate == pytest.approx(planted["amplitude_percent"], rel=0.2)


def test_output_names_follow_design(demo):
    out = demo["out"]
    top_level = {p.name for p in out.iterdir()}
    assert top_level == {
        "dataset_description.json",
        ".bidsignore",
        "README.md",
        "model-bidsglm_smdl.json",
        "logs",
        "sub-01",
        "sub-02",
        "sub-03",
        *(f"sub-0{s}.{ext}" for s in (1, 2, 3) for ext in ("html", "pdf")),
    }
    logs = sorted(p.relative_to(out / "logs").as_posix() for p in (out / "logs").rglob("*.*"))
    assert logs == [f"CITATION.{ext}" for ext in ("bib", "html", "md", "tex")] + [
        f"manifests/sub-0{s}_task-faces_space-MNI152NLin2009cAsym.json" for s in (1, 2, 3)
    ]
    names = [p.name for p in out.glob("sub-*/**/*") if p.is_file()]
    for name in names:
        assert any(p.match(name) for p in (RUN_MAP, SUBJECT_MAP, DESIGN, MASK, MEAN, CLUSTERS)), (
            name
        )
    n_subjects, n_runs, n_contrasts = 3, 2, 4  # face, house, scrambled, faceVsHouse
    n_maps = n_subjects * n_contrasts * 5 * (n_runs + 1)
    assert sum(name.endswith("_statmap.nii.gz") for name in names) == n_maps
    assert all((p.stat().st_mode & 0o044) == 0o044 for p in out.rglob("*.nii.gz"))  # umask 022
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "bids-glm"
    assert description["DatasetLinks"]["raw"] == demo["bids"].as_uri()


def test_sidecars_describe_the_contrast(demo):
    out = demo["out"]
    sidecar = json.loads(
        next(
            out.rglob("sub-01_task-faces_space-*_contrast-faceVsHouse_stat-z_statmap.json")
        ).read_text()
    )
    assert sidecar["ContrastName"] == "faceVsHouse"
    assert sidecar["ContrastWeights"] == {"face": 1.0, "house": -1.0}
    assert sidecar["Test"] == "t"
    assert sidecar["NoiseModel"] == "ar1"
    assert sidecar["Sources"] == [
        f"bids:fmriprep:sub-01/func/sub-01_task-faces_run-{r}_space-MNI152NLin2009cAsym"
        "_desc-preproc_bold.nii.gz"
        for r in (1, 2)
    ]
    run_sidecar = json.loads(
        next(out.rglob("sub-01_task-faces_run-1_*_contrast-face_stat-t_statmap.json")).read_text()
    )
    design = pd.read_csv(next(out.rglob("sub-01_task-faces_run-1_*_design.tsv")), sep="\t")
    assert run_sidecar["DegreesOfFreedom"] == len(design) - design.shape[1]


def _near_bin_edge(ar1: np.ndarray) -> np.ndarray:
    """AR(1) estimates within 1e-6 of a 0.01 bin edge (float32 storage adds ~3e-8)."""
    scaled = ar1.astype(np.float64) * 100
    return np.abs(scaled - np.round(scaled)) < 1e-4


def _agreement(ours: np.ndarray, expected: np.ndarray, edge: np.ndarray) -> None:
    """|dz| < 1e-3 except at voxels whose AR(1) estimate sits on a bin edge (< 0.1%).

    Data and scaling are bit-identical to nilearn's; the fits differ only by summation
    order (~1e-15), so an estimate that close to a 0.01 edge could bin differently.
    """
    dz = np.abs(ours - expected)
    assert not np.any((dz >= 1e-3) & ~edge), np.sort(dz[~edge])[-5:]
    assert np.mean(edge) < 1e-3


@pytest.mark.parametrize("scaling", ["none", "percent"])
@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_run_level_z_maps_equal_nilearn(demo, noise_model, scaling, tmp_path):
    """Same BOLD, same design matrices, same mask: per-run and fixed-effects z agree."""
    from nilearn.glm.first_level import FirstLevelModel

    bids = demo["bids"]
    out = tmp_path / "out"
    code = main(
        [
            str(bids),
            str(out),
            "participant",
            "--participant-label",
            "01",
            "--work-dir",
            str(tmp_path / "work"),
            "--noise-model",
            noise_model,
            "--smoothing-fwhm",
            "6",
            "--fixed-effects",
            "unweighted",
            "--signal-scaling",
            scaling,
            "--contrast",
            "faceVsHouse=face - house",
            "--model-maps",
        ]
    )
    assert code == 0
    func = out / "sub-01" / "func"
    mask_img = nib.load(next(func.glob("*_mask.nii.gz")))
    mask = np.asanyarray(mask_img.dataobj) > 0
    bolds = sorted(
        (bids / "derivatives" / "fmriprep" / "sub-01" / "func").glob("*preproc_bold.nii.gz")
    )
    designs = [pd.read_csv(p, sep="\t") for p in sorted(func.glob("*_design.tsv"))]
    model = FirstLevelModel(
        mask_img=mask_img,
        noise_model=noise_model,
        signal_scaling=0 if scaling == "percent" else False,
        smoothing_fwhm=6,
        minimize_memory=True,
    )
    edges = []
    for run_index, (bold, design) in enumerate(zip(bolds, designs, strict=True), start=1):
        if noise_model == "ar1":
            ar1 = next(func.glob(f"*_run-{run_index}_*_stat-ar1_statmap.nii.gz"))
            edges.append(_near_bin_edge(np.asanyarray(nib.load(ar1).dataobj)[mask]))
        else:
            edges.append(np.zeros(int(mask.sum()), dtype=bool))
        model.fit(bold, design_matrices=[design])
        for contrast, expression in (("face", "face"), ("faceVsHouse", "face - house")):
            expected = model.compute_contrast(expression, output_type="z_score").get_fdata()
            pattern = f"*_run-{run_index}_*_contrast-{contrast}_stat-z_statmap.nii.gz"
            ours = np.asanyarray(nib.load(next(func.glob(pattern))).dataobj)
            _agreement(ours[mask], expected[mask], edges[-1])
    model.fit(bolds, design_matrices=designs)
    expected = model.compute_contrast("face - house", output_type="z_score").get_fdata()
    ours = _subject_map(out, "01", "faceVsHouse", "z")
    _agreement(ours[mask], expected[mask], np.logical_or.reduce(edges))


def test_parallel_runs_give_byte_identical_outputs(demo, tmp_path):
    out = tmp_path / "out"
    code = main(
        [
            str(demo["bids"]),
            str(out),
            "participant",
            "--participant-label",
            "01",
            "--work-dir",
            str(tmp_path / "work"),
            "--n-cpus",
            "2",
            "--contrast",
            "faceVsHouse=face - house",
        ]
    )
    assert code == 0
    ours = sorted(p.relative_to(out) for p in (out / "sub-01").rglob("*") if p.is_file())
    reference = sorted(
        p.relative_to(demo["out"]) for p in (demo["out"] / "sub-01").rglob("*") if p.is_file()
    )
    assert ours == reference
    for relative in ours:
        assert (out / relative).read_bytes() == (demo["out"] / relative).read_bytes(), relative


def test_group_level_finds_the_planted_effects(demo, tmp_path):
    out, truth = tmp_path / "out", demo["truth"]
    command = [str(demo["bids"]), str(out), "group", "--participant-outputs", str(demo["out"])]
    assert main(command) == 0
    stem = "task-faces_space-MNI152NLin2009cAsym_contrast"
    for condition in truth["planted"]:
        z = np.asanyarray(
            nib.load(out / "group" / f"{stem}-{condition}_stat-z_statmap.nii.gz").dataobj
        )
        # 3 subjects: dof 2, so z > 2.33 needs t > 7; the planted blobs reach it
        assert np.mean(z[planted_mask(truth, condition)] > 2.33) > 0.9
    sidecar = json.loads((out / "group" / f"{stem}-face_stat-t_statmap.json").read_text())
    assert sidecar["DegreesOfFreedom"] == 2
    assert sidecar["Subjects"] == ["sub-01", "sub-02", "sub-03"]


def test_cluster_tables_recover_the_planted_blobs(demo):
    truth, out = demo["truth"], demo["out"]
    for subject in truth["subjects"]:
        for condition, planted in truth["planted"].items():
            name = f"sub-{subject}_task-faces_space-MNI152NLin2009cAsym_desc-{condition}_clusters"
            table = pd.read_csv(out / f"sub-{subject}" / "func" / f"{name}.tsv", sep="\t")
            largest = table.iloc[0]  # sorted by peak z: the planted blob comes first
            assert largest["Cluster ID"] == "1"
            size = float(largest["Cluster Size (voxels)"])
            assert size == pytest.approx(planted["n_voxels"], rel=0.2)
            affine = np.array(truth["affine"])
            peak = np.linalg.solve(affine, [largest["X"], largest["Y"], largest["Z"], 1.0])[:3]
            assert planted_mask(truth, condition)[tuple(np.round(peak).astype(int))]
