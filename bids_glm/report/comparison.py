"""Run-wise vs fixed effects: each contrast's run maps and fixed-effects map side by side.

The comparison of nilearn's two-run FIAC example: for a contrast, the z map of every run
and the fixed-effects z map as a row of glass brains drawn with one colour scale, whose
top is the largest in-mask ``|z|`` over the maps of the row (:func:`shared_vmax`), so
that the gain of combining runs is seen at a glance. Each map is thresholded as the rest
of the report thresholds z maps (:class:`~bids_glm.report.views.ReportOptions`). Shown
for a unit with more than one run when the run maps are asked for (``--report-run-maps``).
"""

from __future__ import annotations

import numpy as np

from bids_glm.glm.thresholding import threshold_map
from bids_glm.report import collect
from bids_glm.report.brain_figures import glass_brain_svg
from bids_glm.report.views import ReportOptions, Volume, figure, load_volume, threshold_words

FIXED_EFFECTS = "fixed effects"


def shared_vmax(maps: list[np.ndarray], in_mask: np.ndarray | None) -> float:
    """The largest finite ``|z|`` over ``maps`` (inside ``in_mask`` when given), 0 if none."""
    peak = 0.0
    for data in maps:
        values = data if in_mask is None or in_mask.shape != data.shape else data[in_mask]
        finite = np.abs(values[np.isfinite(values)])
        if finite.size:
            peak = max(peak, float(finite.max()))
    return peak


def comparison_views(
    unit: collect.UnitRecord, mask: Volume | None, options: ReportOptions
) -> list[dict]:
    """One row per fixed-effects contrast that two or more runs' maps also have.

    Returns
    -------
    list of dict
        ``name``, ``anchor``, ``vmax`` (the shared colour-scale top, as drawn),
        ``columns`` (``run-1``, ..., ``fixed effects``), ``figures`` (one per column, in
        that order), ``thresholds`` (one line of words per column) and ``note``.
    """
    views = []
    for subject_map in unit.subject_maps:
        run_maps = [m for m in unit.run_maps if m.label == subject_map.label]
        if len(run_maps) < 2:
            continue
        views.append(_comparison_view(subject_map, run_maps, mask, options))
    return views


def _comparison_view(
    subject_map: collect.StatMap,
    run_maps: list[collect.StatMap],
    mask: Volume | None,
    options: ReportOptions,
) -> dict:
    columns = [m.run or m.label for m in run_maps] + [FIXED_EFFECTS]
    view = {
        "name": subject_map.name,
        "anchor": f"compare-{subject_map.anchor}",
        "columns": columns,
        "figures": [],
        "thresholds": [],
        "vmax": None,
        "note": "",
    }
    volumes = [load_volume(m.z_path) for m in (*run_maps, subject_map)]
    if any(v is None for v in volumes):
        missing = [c for c, v in zip(columns, volumes, strict=True) if v is None]
        view["note"] = f"z map unreadable: {', '.join(missing)}"
        return view
    shape = volumes[-1].data.shape
    if any(v.data.shape != shape for v in volumes):
        view["note"] = "the run and fixed-effects maps are not on one grid"
        return view
    in_mask = volumes[-1].data != 0
    if mask is not None and mask.data.shape == shape:
        in_mask = mask.data > 0
    vmax = shared_vmax([v.data for v in volumes], in_mask)
    view["vmax"] = vmax
    for column, volume in zip(columns, volumes, strict=True):
        thresholded, threshold = threshold_map(
            volume.data,
            in_mask,
            options.height_control,
            options.alpha,
            options.cluster_extent,
            threshold_none=options.alpha,
        )
        words = threshold_words(threshold, int(in_mask.sum()))
        view["thresholds"].append(f"{column}: {words}")
        view["figures"].append(
            figure(
                glass_brain_svg,
                thresholded,
                volume.affine,
                threshold.z_threshold if np.isfinite(threshold.z_threshold) else vmax,
                brain_mask=in_mask,
                title=f"{subject_map.name}, {column}",
                vmax=vmax,
                alt=f"{subject_map.name}, {column}: thresholded z, projections",
                kind="third",
            )
        )
    return view
