"""``--design-dir``: user design matrices used as given, equal to nilearn on the same designs."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset

TASK_SPACE = "task-faces_space-MNI152NLin2009cAsym"
CONTRASTS = (("face", "face"), ("faceVsHouse", "face - house"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """One participant, two runs, and designs bids-glm never builds (SPM HRF, polynomial
    drift of order 2, an arbitrary regressor), run 1 as TSV with ``run-01``, run 2 as a
    CSV written with pandas' default index (nilearn's documentation does so)."""
    from nilearn.glm.first_level import make_first_level_design_matrix

    root = tmp_path_factory.mktemp("user_design")
    bids = root / "bids"
    truth = make_demo_dataset(bids, n_subjects=1, n_runs=2)
    designs_dir = root / "designs"
    designs_dir.mkdir()
    rng = np.random.default_rng(7)
    frame_times = np.arange(truth["n_volumes"]) * truth["tr_s"]
    designs = []
    for run in (1, 2):
        events_path = bids / "sub-01" / "func" / f"sub-01_task-faces_run-{run}_events.tsv"
        events = pd.read_csv(events_path, sep="\t")
        design = make_first_level_design_matrix(
            frame_times,
            events[["onset", "duration", "trial_type"]],
            hrf_model="spm",
            drift_model="polynomial",
            drift_order=2,
            add_regs=rng.standard_normal((len(frame_times), 1)),
            add_reg_names=["arbitrary"],
        )
        designs.append(design)
    designs[0].to_csv(designs_dir / "sub-01_task-faces_run-01_design.tsv", sep="\t", index=False)
    designs[1].to_csv(designs_dir / "sub-01_task-faces_run-2_design.csv")
    return {"root": root, "bids": bids, "designs_dir": designs_dir, "designs": designs}


def _run(dataset, out: Path, *extra: str) -> int:
    return main(
        [
            str(dataset["bids"]),
            str(out),
            "participant",
            "--work-dir",
            str(dataset["root"] / "work"),
            "--design-dir",
            str(dataset["designs_dir"]),
            "--contrast",
            "face=face",
            "--contrast",
            "faceVsHouse=face - house",
            "--no-pdf",
            *extra,
        ]
    )


def _run_name(run: int, rest: str) -> str:
    return f"sub-01_task-faces_run-{run}_space-MNI152NLin2009cAsym_{rest}"


def _near_bin_edge(ar1: np.ndarray) -> np.ndarray:
    scaled = ar1.astype(np.float64) * 100
    return np.abs(scaled - np.round(scaled)) < 1e-4


def _agreement(ours: np.ndarray, expected: np.ndarray, edge: np.ndarray) -> None:
    dz = np.abs(ours - expected)
    assert not np.any((dz >= 1e-3) & ~edge), np.sort(dz[~edge])[-5:]
    assert np.mean(edge) < 1e-3


@pytest.mark.parametrize("noise_model", ["ols", "ar1"])
def test_z_maps_equal_nilearn_on_the_user_designs(dataset, noise_model, tmp_path):
    from nilearn.glm.first_level import FirstLevelModel

    out = tmp_path / "out"
    code = _run(
        dataset, out, "--noise-model", noise_model, "--fixed-effects", "unweighted", "--model-maps"
    )
    assert code == 0
    func = out / "sub-01" / "func"
    for run, given in enumerate(dataset["designs"], start=1):
        written = pd.read_csv(func / _run_name(run, "design.tsv"), sep="\t")
        assert list(written.columns) == list(given.columns)
        np.testing.assert_allclose(written.to_numpy(), given.to_numpy(), rtol=0, atol=1e-8)
        sidecar = json.loads((func / _run_name(run, "design.json")).read_text())
        assert sidecar["DesignSource"] == "user"
        assert Path(sidecar["UserDesignFile"]).parent == dataset["designs_dir"]
    mask_img = nib.load(func / f"sub-01_{TASK_SPACE}_mask.nii.gz")
    mask = np.asanyarray(mask_img.dataobj) > 0
    fmriprep = dataset["bids"] / "derivatives" / "fmriprep" / "sub-01" / "func"
    bolds = sorted(fmriprep.glob("*preproc_bold.nii.gz"))
    model = FirstLevelModel(
        mask_img=mask_img,
        noise_model=noise_model,
        signal_scaling=0,  # bids-glm's default "percent"
        smoothing_fwhm=None,
        minimize_memory=False,
    )
    edges = []
    for run, (bold, design) in enumerate(zip(bolds, dataset["designs"], strict=True), start=1):
        if noise_model == "ar1":
            ar1 = func / _run_name(run, "stat-ar1_statmap.nii.gz")
            edges.append(_near_bin_edge(np.asanyarray(nib.load(ar1).dataobj)[mask]))
        else:
            edges.append(np.zeros(int(mask.sum()), dtype=bool))
        model.fit(bold, design_matrices=[design])
        for label, expression in CONTRASTS:
            expected = model.compute_contrast(expression, output_type="z_score").get_fdata()
            name = _run_name(run, f"contrast-{label}_stat-z_statmap.nii.gz")
            ours = np.asanyarray(nib.load(func / name).dataobj)
            _agreement(ours[mask], expected[mask], edges[-1])
    model.fit(bolds, design_matrices=dataset["designs"])
    for label, expression in CONTRASTS:
        expected = model.compute_contrast(expression, output_type="z_score").get_fdata()
        name = f"sub-01_{TASK_SPACE}_contrast-{label}_stat-z_statmap.nii.gz"
        ours = np.asanyarray(nib.load(func / name).dataobj)
        _agreement(ours[mask], expected[mask], np.logical_or.reduce(edges))
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "design matrix supplied by the user" in methods
    assert "Design</th><td>user-supplied" in (out / "sub-01.html").read_text()


def test_dummy_scans_remove_the_first_rows(dataset, tmp_path):
    out = tmp_path / "out"
    assert _run(dataset, out, "--dummy-scans", "3", "--noise-model", "ols", "--no-reports") == 0
    written = pd.read_csv(out / "sub-01" / "func" / _run_name(1, "design.tsv"), sep="\t")
    np.testing.assert_allclose(written.to_numpy(), dataset["designs"][0].to_numpy()[3:], atol=1e-8)


def test_dry_run_lists_each_runs_design(dataset, tmp_path, capsys):
    assert _run(dataset, tmp_path / "out", "--dry-run") == 0
    printed = capsys.readouterr().out
    assert f"design {dataset['designs_dir'] / 'sub-01_task-faces_run-01_design.tsv'}" in printed
    assert f"design {dataset['designs_dir'] / 'sub-01_task-faces_run-2_design.csv'}" in printed


def _broken_designs(dataset, tmp_path: Path, defect: str) -> Path:
    """A copy of the designs with one defect."""
    folder = tmp_path / f"designs-{defect}"
    folder.mkdir()
    first = dataset["designs"][0].copy()
    second = dataset["designs"][1]
    if defect == "rows":
        first = first.iloc[:-5]
    elif defect == "text":
        first = first.astype(object)
        first.iloc[10, 1] = "oops"
    elif defect == "duplicate":
        first = first.rename(columns={"scrambled": "house"})
    first.to_csv(folder / "sub-01_task-faces_run-1_design.tsv", sep="\t", index=False)
    if defect != "missing":
        second.to_csv(folder / "sub-01_task-faces_run-2_design.tsv", sep="\t", index=False)
    return folder


@pytest.mark.parametrize(
    ("defect", "expected"),
    [
        ("rows", ["run-1_design.tsv", "115 row(s)", "120 volumes"]),
        ("text", ["run-1_design.tsv", "column 'house'", "row 11", "'oops'", "finite number"]),
        ("duplicate", ["run-1_design.tsv", "duplicate column name(s) house"]),
        ("missing", ["no design file", "run-2_space", "sub-01_task-faces_run-2_space-"]),
    ],
)
def test_malformed_designs_exit_3_and_write_nothing(dataset, tmp_path, capsys, defect, expected):
    folder = _broken_designs(dataset, tmp_path, defect)
    out = tmp_path / "out"
    code = main(
        [
            str(dataset["bids"]),
            str(out),
            "participant",
            "--work-dir",
            str(tmp_path / "work"),
            "--design-dir",
            str(folder),
            "--contrast",
            "face=face",
        ]
    )
    assert code == 3
    message = capsys.readouterr().err
    for text in expected:
        assert text in message, (text, message)
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))


def test_design_dir_without_contrast_is_refused(dataset, tmp_path, capsys):
    code = main(
        [
            str(dataset["bids"]),
            str(tmp_path / "out"),
            "participant",
            "--design-dir",
            str(dataset["designs_dir"]),
        ]
    )
    assert code == 3
    assert "expected at least one --contrast or --f-contrast" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_confound_regressors_with_a_user_design_are_refused(dataset, tmp_path, capsys):
    code = main(
        [
            str(dataset["bids"]),
            str(tmp_path / "out"),
            "participant",
            "--design-dir",
            str(dataset["designs_dir"]),
            "--contrast",
            "face=face",
            "--confounds",
            "motion6",
        ]
    )
    assert code == 3
    assert "put them in the design files" in capsys.readouterr().err


def test_reading_checks(tmp_path):
    from bids_glm.errors import InputError
    from bids_glm.inputs.user_design import read_user_design

    path = tmp_path / "sub-01_task-x_run-1_design.tsv"
    path.write_text("a\tb\n1\t2\n3\tn/a\n4\t5\n")
    with pytest.raises(InputError, match=r"column 'b', row 2 .*'n/a'"):
        read_user_design(path, 3)
    path.write_text("a\t\n1\t2\n")
    with pytest.raises(InputError, match="column\\(s\\) 2 have no name"):
        read_user_design(path, 1)
    path.write_text("a\tb\n1\t2\n3\t4\n")
    with pytest.raises(InputError, match="--dummy-scans 1 removes the first rows"):
        read_user_design(path, 3, n_dummy=1)
    table = read_user_design(path, 2)
    assert list(table.columns) == ["a", "b"]
    assert table.to_numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
