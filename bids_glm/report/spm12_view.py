"""The participant report of a ``--preset spm12`` unit: SPM's model, then its sessions.

Every run of such a unit records the one multi-session design (SPM's ``xX.X``, columns
``Sn(s) ...``) and its sidecar's ``SPM12`` block. The report shows that design and the SPM
quantities once (effective degrees of freedom, ReML hyperparameters and pool, sessions),
and each run as its session: the rows and columns of ``Sn(s)``, its events and motion.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from bids_glm.report import collect
from bids_glm.report.figures import (
    contrast_vectors_svg,
    design_correlation_svg,
    design_matrix_svg,
)
from bids_glm.report.views import NOT_RECORDED, Figure, figure

__all__ = ["Spm12View", "spm12_view"]


@dataclass(frozen=True)
class Spm12View:
    """What the report shows of an SPM12 unit.

    Attributes
    ----------
    facts : dict
        The SPM quantities, in words.
    figures : list of Figure
        The multi-session design, its correlations and the contrasts' weights.
    runs : list of RunRecord
        Each run with its session's block of the design.
    """

    facts: dict[str, str]
    figures: list[Figure]
    runs: list[collect.RunRecord]


def _session_block(design: pd.DataFrame, session: int) -> pd.DataFrame | None:
    """Rows and columns of ``Sn(session)``, named without the prefix (None if absent)."""
    prefix = f"Sn({session}) "
    constant = prefix + "constant"
    if constant not in design.columns:
        return None
    columns = [c for c in design.columns if c.startswith(prefix)]
    block = design.loc[design[constant] != 0, columns].reset_index(drop=True)
    block.columns = [c[len(prefix) :] for c in columns]
    return block


def _session_runs(unit: collect.UnitRecord, settings: dict) -> list[collect.RunRecord]:
    """The unit's runs, in model order, each with its session's design and facts."""
    runs = []
    for session, run in enumerate(unit.runs, start=1):
        sources = run.metadata.get("Sources") or []
        metadata = {
            **run.metadata,
            "Sources": sources[session - 1 : session],
            "HRFModel": settings.get("HRFModel", NOT_RECORDED),
            "NoiseModel": f"SPM12 {settings.get('SPM12', {}).get('SerialCorrelations', '')}",
            "DummyScans": settings.get("DummyScans", 0),
        }
        design = None if run.design is None else _session_block(run.design, session)
        label = f"session {session}: {run.label}"
        runs.append(replace(run, design=design, metadata=metadata, label=label, z_maps=[]))
    return runs


def _facts(spm: dict, design: pd.DataFrame | None) -> dict[str, str]:
    hyperparameters = spm.get("ReMLHyperparameters") or []
    erdf = spm.get("EffectiveDegreesOfFreedom")
    scans = NOT_RECORDED
    if design is not None:
        constants = [c for c in design.columns if c.endswith(") constant")]
        scans = ", ".join(str(int((design[c] != 0).sum())) for c in constants)
    return {
        "Model": "one SPM12 GLM over all runs (--preset spm12), not fixed effects over runs",
        "Sessions": str(spm.get("Sessions", NOT_RECORDED)),
        "Scans per session": scans,
        "Serial correlations": str(spm.get("SerialCorrelations", NOT_RECORDED)),
        "High-pass cut-off": f"{spm['HighPassCutoffSeconds']:g} s (DCT, per session)"
        if "HighPassCutoffSeconds" in spm
        else NOT_RECORDED,
        "Microtime (fmri_t, fmri_t0)": f"{spm.get('MicrotimeResolution')}, "
        f"{spm.get('MicrotimeOnset')}",
        "Effective degrees of freedom": NOT_RECORDED if erdf is None else f"{erdf:.2f}",
        "ReML hyperparameters": ", ".join(f"{h:.4g}" for h in hyperparameters) or "none (OLS)",
        "ReML pool": f"{spm['ReMLPoolVoxels']} voxels"
        if spm.get("ReMLPoolVoxels") is not None
        else "none (OLS)",
    }


def spm12_view(unit: collect.UnitRecord) -> Spm12View | None:
    """The SPM12 view of ``unit``, or None when it is not an SPM12 (``--preset spm12``) unit."""
    if not unit.runs or "SPM12" not in unit.runs[0].metadata:
        return None
    first = unit.runs[0]
    figures = []
    if first.design is not None:
        figures = [
            figure(design_matrix_svg, first.design, [], alt="SPM12 design matrix", kind="narrow"),
            figure(design_correlation_svg, first.design, alt="SPM12 design correlations"),
        ]
        weights = {m.name: m.sidecar.get("ContrastWeights", {}) for m in unit.subject_maps}
        if any(weights.values()):
            columns = list(first.design.columns)
            figures.append(figure(contrast_vectors_svg, weights, columns, alt="SPM12 contrasts"))
    return Spm12View(
        facts=_facts(first.metadata["SPM12"], first.design),
        figures=figures,
        runs=_session_runs(unit, unit.summary.settings or {}),
    )
