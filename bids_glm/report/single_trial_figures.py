"""Report figures of single-trial estimates (``--single-trial``): the run's trial-wise (LSA)
design, and each condition's trial estimates at the peak of its run-level contrast.

Everything is read from the written outputs (`bids_glm.report.collect.RunRecord`): the LSA
design table, the condition's run-level z map (its peak voxel, vertex or grayordinate) and
its beta series, NIfTI, GIfTI or CIFTI alike (`bids_glm.image.map_files`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bids_glm.derivatives import naming
from bids_glm.errors import InputError
from bids_glm.image.map_files import read_map, read_map_series_at
from bids_glm.report import svg
from bids_glm.report.collect import RunRecord, sidecar_of
from bids_glm.report.figures import design_matrix_svg
from bids_glm.report.views import Figure, figure

_PLOT_WIDTH_PX = 420.0
_PLOT_HEIGHT_PX = 120.0
_POINT_RGB = "#1f4e96"


def trial_estimates_svg(onsets_s: Sequence[float], estimates: Sequence[float], title: str) -> str:
    """Trial estimates (one dot and stem per trial) against the trials' onsets.

    Parameters
    ----------
    onsets_s : sequence of float
        Trial onsets in seconds.
    estimates : sequence of float
        One estimate per trial (NaN: not drawn).
    title : str
        The line above the plot (e.g. the condition and the peak voxel).

    Returns
    -------
    str
        SVG text.
    """
    onsets = np.asarray(onsets_s, dtype=float)
    values = np.asarray(estimates, dtype=float)
    if onsets.size == 0 or onsets.size != values.size:
        raise ValueError(f"expected one estimate per onset; got {values.size} for {onsets.size}")
    finite = np.isfinite(values)
    low = min(float(np.min(values[finite], initial=0.0)), 0.0)
    high = max(float(np.max(values[finite], initial=0.0)), 0.0)
    span = (high - low) or 1.0
    low, high = low - 0.05 * span, high + 0.05 * span
    start_s, stop_s = 0.0, float(onsets.max()) * 1.05 or 1.0
    left, top = 56.0, 24.0
    x_of = lambda t: left + (t - start_s) / (stop_s - start_s) * _PLOT_WIDTH_PX  # noqa: E731
    y_of = lambda v: top + (high - v) / (high - low) * _PLOT_HEIGHT_PX  # noqa: E731

    parts = [svg.text(left, 14, title, weight="bold")]
    parts.append(svg.rect(left, top, _PLOT_WIDTH_PX, _PLOT_HEIGHT_PX, "#ffffff", stroke="#999"))
    parts.append(svg.line(left, y_of(0.0), left + _PLOT_WIDTH_PX, y_of(0.0), "#888"))
    for tick in svg.nice_ticks(low, high, 5):
        y = y_of(tick)
        parts.append(svg.line(left - 3, y, left, y))
        label = svg.tick_label(tick)
        parts.append(svg.text(left - 5, y + 3, label, size=svg.SMALL_FONT_PX, anchor="end"))
    middle = top + _PLOT_HEIGHT_PX / 2
    parts.append(
        svg.text(12, middle, "estimate", size=svg.SMALL_FONT_PX, anchor="middle", rotate=-90)
    )
    for onset, value in zip(onsets[finite], values[finite], strict=True):
        x, y = x_of(onset), y_of(value)
        parts.append(svg.line(x, y_of(0.0), x, y, _POINT_RGB))
        parts.append(f'<circle cx="{svg.fmt(x)}" cy="{svg.fmt(y)}" r="2.5" fill="{_POINT_RGB}"/>')
    bottom = top + _PLOT_HEIGHT_PX
    for tick in svg.nice_ticks(start_s, stop_s, 6):
        x = x_of(tick)
        parts.append(svg.line(x, bottom, x, bottom + 3))
        label = svg.tick_label(tick)
        parts.append(svg.text(x, bottom + 14, label, size=svg.SMALL_FONT_PX, anchor="middle"))
    parts.append(
        svg.text(
            left + _PLOT_WIDTH_PX / 2,
            bottom + 28,
            "onset (s)",
            size=svg.SMALL_FONT_PX,
            anchor="middle",
        )
    )
    return svg.document(left + _PLOT_WIDTH_PX + 12, bottom + 36, parts, "trial estimates")


def _peak_series(z_files, series_files) -> tuple[str, np.ndarray]:
    """Where the z map is largest (voxel, vertex or grayordinate) and the series there."""
    z, whole = read_map(z_files)
    peak = int(np.argmax(np.where(np.isfinite(z), z, -np.inf)))
    return whole.location_name(peak), read_map_series_at(series_files, peak, z.size)


def single_trial_figures(run: RunRecord) -> tuple[list[Figure], list[str]]:
    """The run's LSA design and, per condition, its estimates at its contrast's peak.

    Returns the figures and notes on what could not be drawn.
    """
    figures, notes = [], []
    if run.trial_design_path is not None:
        table = pd.read_csv(run.trial_design_path, sep="\t", na_values="n/a")
        figures.append(
            figure(
                design_matrix_svg, table, alt=f"{run.label} single-trial (LSA) design", kind="wide"
            )
        )
    for label, path in run.beta_series:
        z_files = naming.map_part_files(naming.condition_z_map_path(path))
        if not all(f.is_file() for f in z_files):
            notes.append(f"beta series of {label}: no run-level z map of {label} to find a peak")
            continue
        trials = sidecar_of(path).get("Trials") or []
        onsets = [trial.get("onset", np.nan) for trial in trials]
        try:
            peak, values = _peak_series(z_files, naming.map_part_files(path))
        except (OSError, ValueError, InputError) as error:
            notes.append(f"beta series of {label} unreadable ({error})")
            continue
        title = f"{label}: trial estimates at the peak of its z map ({peak})"
        figures.append(
            figure(
                trial_estimates_svg,
                onsets,
                values,
                title,
                alt=f"{run.label} {label} trial estimates",
                kind="wide",
            )
        )
    return figures, notes
