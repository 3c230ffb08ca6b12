"""A one-run participant: the subject level is the run (fixed effects of one run return it).

The subject-level maps are written from the run's contrasts as they are computed (each image
compressed once), not pooled again after the run; they must equal what fixed effects of
that run give, carry subject-level sidecars, and get the cluster tables of their z maps.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from bids_glm.cli.main import main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.glm.clusters import cluster_table
from bids_glm.glm.fixed_effects import fixed_effects
from bids_glm.glm.results import ContrastMaps

PREFIX = "sub-01_task-faces"
SPACE = "space-MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("one_run")
    make_demo_dataset(root / "bids", n_subjects=1, n_runs=1)
    code = main(
        [
            str(root / "bids"),
            str(root / "out"),
            "participant",
            "--work-dir",
            str(root / "work"),
            "--no-reports",
            "--contrast",
            "faceVsHouse=face - house",
            "--f-contrast",
            "effectsOfInterest=face; house",
        ]
    )
    assert code == 0
    return root / "out" / "sub-01" / "func"


def _map(func, level: str, contrast: str, stat: str) -> np.ndarray:
    run = "_run-1" if level == "run" else ""
    path = func / f"{PREFIX}{run}_{SPACE}_contrast-{contrast}_stat-{stat}_statmap.nii.gz"
    return np.asanyarray(nib.load(path).dataobj).astype(np.float64)


def test_subject_maps_are_fixed_effects_of_the_one_run(one_run):
    mask = np.asanyarray(nib.load(one_run / f"{PREFIX}_{SPACE}_mask.nii.gz").dataobj) > 0
    effect, variance = (
        _map(one_run, "run", "faceVsHouse", s)[mask] for s in ("effect", "variance")
    )
    sidecar = json.loads(
        (one_run / f"{PREFIX}_{SPACE}_contrast-faceVsHouse_stat-z_statmap.json").read_text()
    )
    run_maps = ContrastMaps.for_t(
        "faceVsHouse", effect, variance, effect / np.sqrt(variance), sidecar["DegreesOfFreedom"]
    )
    pooled = fixed_effects([run_maps], "precision")
    for stat, expected in {"effect": pooled.effect, "t": pooled.stat, "z": pooled.z}.items():
        written = _map(one_run, "subject", "faceVsHouse", stat)[mask]
        np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)
    for stat in ("F", "z", "p"):
        np.testing.assert_array_equal(
            _map(one_run, "subject", "effectsOfInterest", stat),
            _map(one_run, "run", "effectsOfInterest", stat),
        )
    assert sidecar["Level"] == "subject" and sidecar["FixedEffects"] == "precision"
    assert len(sidecar["Sources"]) == 1 and sidecar["Sources"][0].endswith("_bold.nii.gz")


@pytest.mark.parametrize("contrast", ["faceVsHouse", "effectsOfInterest"])
def test_cluster_tables_are_those_of_the_subject_z_maps(one_run, contrast):
    stem = f"{PREFIX}_{SPACE}_desc-{contrast}_clusters"
    settings = json.loads((one_run / f"{stem}.json").read_text())
    written = pd.read_csv(one_run / f"{stem}.tsv", sep="\t")
    image = nib.load(one_run / f"{PREFIX}_{SPACE}_contrast-{contrast}_stat-z_statmap.nii.gz")
    expected = cluster_table(
        np.asanyarray(image.dataobj).astype(np.float64),
        image.affine,
        settings["ZThreshold"],
        settings["ClusterExtentVoxels"],
    )
    assert len(written) == len(expected) > 0
    np.testing.assert_allclose(written["Peak Stat"], expected["Peak Stat"], rtol=1e-5)
