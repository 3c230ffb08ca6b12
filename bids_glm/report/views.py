"""What each report section shows, computed from the records of :mod:`collect`.

Every view is a plain dict for the templates. Thresholds and cluster tables are
recomputed here from the z maps with the :class:`ReportOptions` given (never refitted),
and figures come from :mod:`bids_glm.report.figures` and
:mod:`bids_glm.report.brain_figures` as SVG embedded in ``data:`` URIs (an SVG shown
through ``<img>`` cannot run scripts). A figure or file that fails becomes a note.
"""

from __future__ import annotations

import base64
import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import ascii_lowercase

import nibabel as nib
import numpy as np
import pandas as pd

from bids_glm.glm.clusters import cluster_table
from bids_glm.glm.thresholding import HEIGHT_CONTROLS, Threshold, threshold_map
from bids_glm.report import collect

LOGGER = logging.getLogger("bids_glm")
NOT_RECORDED = "not recorded"
MAX_CLUSTERS = 20  # largest-peak clusters tabulated; all of them are in the clusters TSV
_FD_SETTING = re.compile(r"FD=([0-9.]+)")


@dataclass(frozen=True)
class ReportOptions:
    """How the report thresholds z maps and what it writes.

    Attributes
    ----------
    height_control : {"fpr", "fdr", "bonferroni", "none"}
        Voxel-level correction (see :func:`bids_glm.glm.thresholding.height_threshold`).
    alpha : float
        Error rate; for ``"none"`` it is the z threshold itself.
    cluster_extent : int
        Minimum cluster size in voxels.
    write_pdf : bool
        Also write the PDF (WeasyPrint).
    run_level : bool
        Also show every run's contrast maps, after the fixed-effects ones.
    """

    height_control: str = "fpr"
    alpha: float = 0.001
    cluster_extent: int = 0
    write_pdf: bool = True
    run_level: bool = False

    def __post_init__(self) -> None:
        if self.height_control not in HEIGHT_CONTROLS:
            raise ValueError(
                f"height_control must be one of {HEIGHT_CONTROLS}; got {self.height_control!r}"
            )
        if self.height_control != "none" and not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1]; got {self.alpha}")
        if self.cluster_extent < 0:
            raise ValueError(f"cluster_extent must be >= 0 voxels; got {self.cluster_extent}")


@dataclass(frozen=True)
class Figure:
    """An embedded SVG figure, or the note that replaces it."""

    uri: str = ""
    note: str = ""
    alt: str = ""
    kind: str = "half"


@dataclass(frozen=True)
class Volume:
    """A 3D image read for the report."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def voxel_size_mm(self) -> tuple[float, ...]:
        """Voxel edge lengths in mm."""
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def load_volume(path: Path | None) -> Volume | None:
    """A 3D float32 image, or None when absent or unreadable."""
    if path is None:
        return None
    try:
        image = nib.load(path)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
    except (OSError, ValueError, nib.filebasedimages.ImageFileError) as error:
        LOGGER.warning("report: %s unreadable (%s)", path, error)
        return None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return Volume(data, image.affine) if data.ndim == 3 else None


def figure(
    module: str, function: str, *args, alt: str = "", kind: str = "half", **kwargs
) -> Figure:
    """Call ``bids_glm.report.<module>.<function>`` for an SVG; a note when it fails.

    A report must never fail for one figure, so any error becomes a logged note.
    ``kind`` (``narrow``, ``half``, ``wide``) is the figure's width class on the page.
    """
    try:
        draw: Callable[..., str] = getattr(
            importlib.import_module(f"bids_glm.report.{module}"), function
        )
        svg = draw(*args, **kwargs)
    except Exception as error:  # one failed figure must not sink the report
        LOGGER.warning("report: figure %s.%s failed (%s)", module, function, error)
        return Figure(
            note=f"figure unavailable ({type(error).__name__}: {error})", alt=alt, kind=kind
        )
    payload = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return Figure(uri=f"data:image/svg+xml;base64,{payload}", alt=alt, kind=kind)


def threshold_words(threshold: Threshold, n_tests: int) -> str:
    """The threshold in words: ``z > 3.09 (uncorrected p < 0.001), clusters >= 0 voxels``."""
    rule = {
        "fpr": f"uncorrected p < {threshold.alpha:g}",
        "fdr": f"false discovery rate q < {threshold.alpha:g}",
        "bonferroni": f"Bonferroni-corrected p < {threshold.alpha:g} over {n_tests} voxels",
        "none": "fixed height, no correction",
    }[threshold.height_control]
    extent = f"clusters >= {threshold.cluster_extent} voxels"
    if not np.isfinite(threshold.z_threshold):
        return f"no voxel passes ({rule}), {extent}"
    return f"z > {threshold.z_threshold:.2f} ({rule}), {extent}"


def _cell(value: object, spec: str) -> str:
    return "" if pd.isna(value) else format(value, spec)


def cluster_rows(z_volume: np.ndarray, affine: np.ndarray, threshold: Threshold) -> list[dict]:
    """The cluster table of a z map as rows of display strings (every cluster)."""
    if not np.isfinite(threshold.z_threshold):
        return []
    table = cluster_table(z_volume, affine, threshold.z_threshold, threshold.cluster_extent)
    return [
        {
            "id": row["Cluster ID"],
            "x": _cell(row["X"], ".0f"),
            "y": _cell(row["Y"], ".0f"),
            "z": _cell(row["Z"], ".0f"),
            "peak": _cell(row["Peak Stat"], ".2f"),
            "voxels": _cell(row["Cluster Size (voxels)"], "d"),
            "mm3": _cell(row["Cluster Size (mm3)"], "d"),
        }
        for row in table.to_dict("records")
    ]


def contrast_view(
    stat_map: collect.StatMap,
    mask: Volume | None,
    underlay: Volume | None,
    options: ReportOptions,
    heading: str,
) -> dict:
    """Threshold one z map and draw it: slices, glass brain, threshold, cluster table."""
    sidecar = stat_map.sidecar
    view = {
        "heading": heading,
        "name": stat_map.name,
        "anchor": f"{stat_map.z_path.name.removesuffix(collect.Z_MAP_SUFFIX)}",
        "test": sidecar.get("Test", NOT_RECORDED),
        "dof": sidecar.get("DegreesOfFreedom", NOT_RECORDED),
        "expression": sidecar.get("ContrastExpression", ""),
        "figures": [],
        "rows": [],
        "threshold": "",
        "note": "",
        "hidden_clusters": 0,
    }
    z_map = load_volume(stat_map.z_path)
    if z_map is None:
        view["note"] = f"z map {stat_map.z_path.name} unreadable"
        return view
    in_mask = z_map.data != 0
    if mask is not None and mask.data.shape == z_map.data.shape:
        in_mask = mask.data > 0
    thresholded, threshold = threshold_map(
        z_map.data,
        in_mask,
        options.height_control,
        options.alpha,
        options.cluster_extent,
        threshold_none=options.alpha,
    )
    view["threshold"] = threshold_words(threshold, int(in_mask.sum()))
    rows = cluster_rows(thresholded, z_map.affine, threshold)
    cluster_numbers = [int(row["id"].rstrip(ascii_lowercase)) for row in rows]
    view["rows"] = [r for r, n in zip(rows, cluster_numbers, strict=True) if n <= MAX_CLUSTERS]
    view["hidden_clusters"] = max(max(cluster_numbers, default=0) - MAX_CLUSTERS, 0)
    if not view["rows"]:
        view["note"] = "No voxel survives the threshold."
        return view
    peak_mm = [float(view["rows"][0][k]) for k in ("x", "y", "z")]
    background = underlay if _same_grid(underlay, z_map) else None
    underlay_data = None if background is None else background.data
    view["figures"] = [
        figure(
            "brain_figures",
            "stat_slices_svg",
            thresholded,
            underlay_data,
            z_map.affine,
            threshold.z_threshold,
            cut_mm=peak_mm,
            title=stat_map.name,
            alt=f"{stat_map.name}: thresholded z, orthogonal slices through the peak",
            kind="wide",
        ),
        figure(
            "brain_figures",
            "glass_brain_svg",
            thresholded,
            z_map.affine,
            threshold.z_threshold,
            brain_mask=None if mask is None else mask.data > 0,
            title=stat_map.name,
            alt=f"{stat_map.name}: maximum-intensity projections",
            kind="wide",
        ),
    ]
    return view


def _same_grid(a: Volume | None, b: Volume | None) -> bool:
    return (
        a is not None
        and b is not None
        and a.data.shape == b.data.shape
        and np.allclose(a.affine, b.affine, atol=1e-3)
    )


def fd_threshold_mm(settings: object) -> float | None:
    """The FD censoring threshold, if the recorded settings state one (``FD=0.5``)."""
    match = _FD_SETTING.search(str(settings))
    return float(match.group(1)) if match else None


def run_view(run: collect.RunRecord, fd_mm: float | None) -> dict:
    """The per-run section: design, correlation, events, motion, contrast vectors."""
    meta = run.metadata
    facts = {
        "Volumes fitted": NOT_RECORDED if run.design is None else str(len(run.design)),
        "Repetition time": f"{run.tr_s:g} s" if run.tr_s else NOT_RECORDED,
        "Dummy scans": str(run.dummy_scans),
        "Censored volumes": ", ".join(map(str, run.censored_volumes)) or "none",
        "HRF model": meta.get("HRFModel", NOT_RECORDED),
        "Noise model": meta.get("NoiseModel", NOT_RECORDED),
        "Confounds": ", ".join(c for cols in (meta.get("Confounds") or {}).values() for c in cols)
        or "none",
        "Sources": ", ".join(meta.get("Sources") or []) or NOT_RECORDED,
    }
    figures = []
    if run.design is not None:
        figures.append(
            figure(
                "figures",
                "design_matrix_svg",
                run.design,
                run.censored_rows,
                alt=f"{run.label} design matrix",
                kind="narrow",
            )
        )
        figures.append(
            figure(
                "figures", "design_correlation_svg", run.design, alt=f"{run.label} correlations"
            )
        )
    if run.events is not None and run.scan_duration_s:
        figures.append(
            figure(
                "figures",
                "event_timeline_svg",
                run.events,
                run.scan_duration_s,
                alt=f"{run.label} events",
                kind="wide",
            )
        )
    if run.framewise_displacement_mm is not None and run.tr_s:
        figures.append(
            figure(
                "figures",
                "motion_trace_svg",
                run.framewise_displacement_mm,
                run.tr_s,
                run.censored_volumes,
                threshold_mm=fd_mm,
                alt=f"{run.label} framewise displacement",
                kind="wide",
            )
        )
    if run.contrast_weights and run.design is not None:
        figures.append(
            figure(
                "figures",
                "contrast_vectors_svg",
                run.contrast_weights,
                list(run.design.columns),
                alt=f"{run.label} contrasts",
            )
        )
    return {"label": run.label, "facts": facts, "figures": figures, "notes": run.notes}


def _listed(value: object) -> str:
    if value is None or value == [] or value == {}:
        return NOT_RECORDED
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def unit_view(unit: collect.UnitRecord, options: ReportOptions) -> dict:
    """Everything shown for one unit (participant, session, task, space)."""
    summary = unit.summary
    mask = load_volume(unit.mask_path)
    underlay = load_volume(unit.mean_path)
    notes = []
    if underlay is None:
        notes.append("mean BOLD image not recorded: the mask is shown as the underlay")
        underlay = mask
    voxel = "x".join(f"{v:g}" for v in mask.voxel_size_mm) + " mm" if mask else NOT_RECORDED
    n_mask = int((mask.data > 0).sum()) if mask else 0
    mask_size = (
        f"{n_mask} voxels ({n_mask * np.prod(mask.voxel_size_mm) / 1000:.1f} mL)"
        if mask
        else NOT_RECORDED
    )
    excluded = [
        f"{r.get('Run', '?')}"
        + (f" (contrast {r['Contrast']})" if r.get("Contrast") else "")
        + f": {r.get('Reason', 'no reason recorded')}"
        for r in summary.get("RunsExcluded") or []
        if isinstance(r, dict)
    ]
    facts = {
        "Participant": f"sub-{unit.entities.get('sub', '?')}",
        "Session": summary.get("Session") or unit.entities.get("ses") or "none",
        "Task": unit.entities.get("task", NOT_RECORDED),
        "Space": unit.entities.get("space", NOT_RECORDED),
        "Runs used": ", ".join(r.label for r in unit.runs) or "none found",
        "Runs excluded": (
            "; ".join(excluded) or "none" if "RunsExcluded" in summary else NOT_RECORDED
        ),
        "Conditions": _listed(summary.get("Conditions")),
        "Confounds": _listed(summary.get("Confounds")) if summary.get("Confounds") else "none",
        "Repetition time (s)": _listed(summary.get("RepetitionTimes")),
        "Voxel size": voxel,
        "Mask size": mask_size,
        "Warnings": str(len(summary["Warnings"] or [])) if "Warnings" in summary else NOT_RECORDED,
    }
    mask_figure = (
        figure(
            "brain_figures",
            "mask_outline_svg",
            underlay.data,
            mask.data > 0,
            mask.affine,
            alt=f"{unit.title}: mask outline",
            kind="wide",
        )
        if mask is not None and _same_grid(underlay, mask)
        else Figure(note="mask or underlay missing: no mask figure", kind="wide")
    )
    maps = [(m, f"{m.name} (fixed effects)") for m in unit.subject_maps]
    if options.run_level:
        maps += [(m, f"{m.name} ({m.run})") for m in unit.run_maps]
    fd_mm = fd_threshold_mm(summary.get("Settings"))
    return {
        "title": unit.title,
        "anchor": unit.anchor,
        "facts": facts,
        "warnings": [str(w) for w in summary.get("Warnings") or []],
        "settings": summary.get("Settings") or {},
        "notes": notes,
        "runs": [run_view(run, fd_mm) for run in unit.runs],
        "mask_figure": mask_figure,
        "contrasts": [contrast_view(m, mask, underlay, options, h) for m, h in maps],
        "command_line": summary.get("CommandLine") or NOT_RECORDED,
        "software": summary.get("Software") or {},
        "elapsed_s": summary.get("ElapsedSeconds"),
    }
