"""Readers of the SPM12 r7771 reference outputs in ``../shared/realdata/spm12_planted``.

Test helpers only: the reference folder's layout (``spm12/<model>/``) and the simulated
BIDS subject the models were fitted to.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bids_glm.design.spm_session_design import SpmCondition, SpmSession

ROOT = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "spm12_planted"
MODELS = (
    "multisession_ar1",
    "run1_ar1",
    "run1_ols",
    "run1_t0_1",
    "run1_derivs",
    "run1_implicit",
    "multisession_ols",
    "run2_hpf64",
)
CONDITION_ORDER = ("face", "house", "scrambled image", "catch")
FUNC = ROOT / "bids" / "derivatives" / "fmriprep" / "sub-pilot01" / "func"
PREFIX = "sub-pilot01_task-facehouse"
SPACE = "space-MNI152NLin2009cAsym"

needs_reference = pytest.mark.skipif(not ROOT.is_dir(), reason="spm12_planted reference absent")


@dataclass(frozen=True)
class ReferenceModel:
    """One SPM12 model of the reference: its folder and its settings."""

    name: str
    folder: Path
    export: dict

    @property
    def runs(self) -> tuple[int, ...]:
        return tuple(int(r) for r in np.atleast_1d(self.export["model"]["runs"]))

    @property
    def tr_s(self) -> float:
        return float(self.export["RT"])

    @property
    def fmri_t0(self) -> int:
        return int(self.export["model"]["t0"])

    @property
    def derivatives(self) -> tuple[bool, bool]:
        time, dispersion = self.export["model"]["derivs"]
        return bool(time), bool(dispersion)

    @property
    def cutoff_s(self) -> float:
        return float(self.export["model"]["hpf"])

    @property
    def explicit_mask(self) -> bool:
        return bool(self.export["model"]["mask"])

    @property
    def ar1(self) -> bool:
        return self.export["model"]["cvi"] == "AR(1)"

    def csv(self, name: str) -> np.ndarray:
        return np.loadtxt(
            self.folder / name, delimiter=",", ndmin=2, skiprows=_header_rows(self.folder / name)
        )

    def image(self, name: str) -> np.ndarray:
        import nibabel as nib

        return np.asarray(nib.load(self.folder / f"{name}.nii.gz").dataobj, dtype=float)


def _header_rows(path: Path) -> int:
    first = path.read_text().split("\n", 1)[0]
    return 0 if first[:1] in "-0123456789." else 1


def load_model(name: str) -> ReferenceModel:
    folder = ROOT / "spm12" / name
    return ReferenceModel(name, folder, json.loads((folder / "spm_export.json").read_text()))


def bold_path(run: int) -> Path:
    return FUNC / f"{PREFIX}_run-{run}_{SPACE}_desc-preproc_bold.nii.gz"


def mask_path(run: int) -> Path:
    return FUNC / f"{PREFIX}_run-{run}_{SPACE}_desc-brain_mask.nii.gz"


def events_session(run: int, n_scans: int) -> SpmSession:
    """The run's events as an SPM session, conditions in the reference's order."""
    events = pd.read_csv(
        ROOT / "bids" / "sub-pilot01" / "func" / f"{PREFIX}_run-{run:02d}_events.tsv", sep="\t"
    )
    conditions = []
    for name in CONDITION_ORDER:
        rows = events[events["trial_type"] == name]
        if len(rows):
            conditions.append(
                SpmCondition(
                    name, tuple(rows["onset"].astype(float)), tuple(rows["duration"].astype(float))
                )
            )
    return SpmSession(n_scans, tuple(conditions))


@dataclass(frozen=True)
class FittedModel:
    """Our fit of one reference model, with what went into it."""

    reference: ReferenceModel
    data: object
    design: object
    scale: np.ndarray
    fit: object
    noise: object


def fit_reference_model(name: str) -> FittedModel:
    """Fit one reference model with the SPM12 modules, from the BIDS inputs."""
    import nibabel as nib

    from bids_glm.design.spm_basis import spm_basis_set
    from bids_glm.design.spm_session_design import spm_design
    from bids_glm.glm.spm_filter import dct_high_pass_basis
    from bids_glm.glm.spm_globals import session_scale_factors
    from bids_glm.glm.spm_model import SpmLayout, fit_spm_model
    from bids_glm.pipeline.spm_data import read_spm_data

    model = load_model(name)
    explicit = np.asarray(nib.load(mask_path(1)).dataobj) > 0 if model.explicit_mask else None
    data = read_spm_data(tuple(bold_path(run) for run in model.runs), explicit)
    sessions = tuple(
        events_session(run, n) for run, n in zip(model.runs, data.n_scans, strict=True)
    )
    basis = spm_basis_set(model.tr_s / 16, *model.derivatives)
    design = spm_design(sessions, model.tr_s, basis, 16, model.fmri_t0)
    scale = session_scale_factors(data.globals_, design.session_rows)
    drifts = tuple(dct_high_pass_basis(n, model.tr_s, model.cutoff_s) for n in data.n_scans)
    layout = SpmLayout(design.matrix, design.session_rows, drifts, design.constant_columns)
    fit, noise = fit_spm_model(data.data, scale, layout, model.ar1)
    return FittedModel(model, data, design, scale, fit, noise)
