"""What ``--preset spm12`` writes beyond the usual maps: the multi-session design and the
SPM quantities in each map's sidecar (effective degrees of freedom, ReML hyperparameters,
pool size, the weights over SPM's columns).

Names come from :mod:`bids_glm.derivatives.naming`; maps are the same files as the default
mode's subject-level maps (no ``run`` entity).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.derivatives import naming
from bids_glm.derivatives.files import MapWriter, write_json, write_tsv
from bids_glm.derivatives.maps import (
    MAPS_BY_TEST,
    MapTarget,
    Provenance,
    contrast_sidecar,
    label_record,
)
from bids_glm.design.run_design import ContrastPlan
from bids_glm.glm.results import ContrastMaps
from bids_glm.settings import Spm12Settings

__all__ = ["SpmRecord", "write_spm_contrast_maps", "write_spm_design"]


@dataclass(frozen=True)
class SpmRecord:
    """The SPM12 quantities of one fitted model, as sidecars record them.

    Attributes
    ----------
    erdf : float or None
        Effective residual degrees of freedom (None before the fit: ``--dry-run``).
    hyperparameters : tuple of float
        ReML hyperparameters ``xVi.h`` (two per session); empty for ``cvi none``.
    pool_voxels : int or None
        Voxels pooled for ReML; None for ``cvi none``.
    column_names : tuple of str
        SPM's design column names.
    n_sessions : int
        Sessions (runs) in the model.
    """

    erdf: float | None
    hyperparameters: tuple[float, ...]
    pool_voxels: int | None
    column_names: tuple[str, ...]
    n_sessions: int

    def sidecar(self, spm12: Spm12Settings) -> dict:
        """The ``SPM12`` block of a sidecar."""
        return {
            "Preset": "spm12",
            "SerialCorrelations": "AR(1)" if spm12.serial_correlations else "none",
            "EffectiveDegreesOfFreedom": self.erdf,
            "ReMLHyperparameters": list(self.hyperparameters),
            "ReMLPoolVoxels": self.pool_voxels,
            "Sessions": self.n_sessions,
            "MicrotimeResolution": spm12.fmri_t,
            "MicrotimeOnset": spm12.fmri_t0,
            "HighPassCutoffSeconds": spm12.high_pass_cutoff_s,
        }


def write_spm_design(
    folder: Path,
    entities: dict[str, str],
    matrix: np.ndarray,
    record: SpmRecord,
    spm12: Spm12Settings,
    tr_s: float,
    sources: Sequence[str],
) -> Path:
    """The multi-session design ``xX.X`` (TSV, SPM's column names) and its JSON.

    Returns the TSV's path.
    """
    path = naming.design_path(folder, entities)
    write_tsv(path, pd.DataFrame(matrix, columns=list(record.column_names)))
    write_json(
        naming.sidecar_path(path),
        {
            "RepetitionTime": tr_s,
            "SPM12": record.sidecar(spm12),
            "HighPassFilter": "SPM DCT basis per session, removed by residual forming "
            "from data and design (not columns of this matrix)",
            **label_record(entities),
            "Sources": list(sources),
        },
    )
    return path


def write_spm_contrast_maps(
    writer: MapWriter,
    target: MapTarget,
    plan: ContrastPlan,
    maps: ContrastMaps,
    provenance: Provenance,
    spm: tuple[SpmRecord, Spm12Settings, np.ndarray],
) -> None:
    """A contrast's maps with the usual sidecars plus the ``SPM12`` block.

    ``spm`` is the model's record, the settings and the contrast's weights over SPM's
    columns (``(p,)`` for t, ``(q, p)`` for F); the sidecars' ``ContrastWeights`` name
    those columns.
    """
    record, spm12, weights = spm
    for stat in MAPS_BY_TEST[maps.stat_type]:
        path = naming.stat_map_path(target.folder, target.entities, stat, contrast=plan.label)
        sidecar = contrast_sidecar(plan, maps, stat, provenance)
        sidecar.pop("FixedEffects", None)  # one multi-session GLM, no runs combined
        # the weights over the columns of the fitted (multi-session) design
        sidecar["ContrastWeights"] = _named_weights(weights, record.column_names)
        sidecar["SPM12"] = record.sidecar(spm12)
        sidecar.update(label_record({**target.entities, "contrast": plan.label}))
        target.write(writer, path, _values(maps, stat), sidecar)


def _named_weights(weights: np.ndarray, column_names: Sequence[str]):
    """``{column: weight}`` (non-zero weights) for a t contrast, a list of them for F."""
    rows = [
        {name: float(w) for name, w in zip(column_names, row, strict=True) if w != 0}
        for row in np.atleast_2d(weights)
    ]
    return rows[0] if np.ndim(weights) == 1 else rows


def _values(maps: ContrastMaps, stat: str) -> np.ndarray:
    """The map of one statistic."""
    if stat in ("t", "F"):
        return maps.stat
    return {"effect": maps.effect, "variance": maps.variance, "z": maps.z, "p": maps.p}[stat]
