"""Figures about a run's design: matrix, column correlations, events, motion, contrasts.

Each function returns one self-contained SVG document (see :mod:`bids_glm.report.svg`);
every name taken from the data (columns, conditions, contrasts) is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from bids_glm.report import svg

_MATRIX_HEIGHT_PX = 320.0
_MATRIX_MAX_HEIGHT_PX = 640.0
_COLUMN_PX = 16
_LABEL_MAX_CHARS = 28
_PLOT_WIDTH_PX = 640.0
_CENSOR_RGB = "#d62728"
_CATEGORY_COLOURS = "#1f77b4 #ff7f0e #2ca02c #9467bd #8c564b #e377c2 #17becf #bcbd22".split()


def design_matrix_svg(design: pd.DataFrame, censored: Sequence[int] = ()) -> str:
    """Draw a design matrix as a gray image, one column per regressor, scans top to bottom.

    Parameters
    ----------
    design : pandas.DataFrame
        Scans x regressors; column names are the labels.
    censored : sequence of int
        0-based indices of censored scans, marked in red at the left edge.

    Returns
    -------
    str
        SVG text. Each column is divided by its maximum absolute value, then -1 is black,
        0 mid-gray and +1 white (an all-zero column stays mid-gray).
    """
    values = _numeric_matrix(design, "design")
    n_scans, n_columns = values.shape
    censored_scans = _scan_indices(censored, n_scans)
    peak = np.nanmax(np.abs(values), axis=0, initial=0.0)
    scaled = values / np.where(peak > 0, peak, 1.0)
    row_factor = max(1, round(_MATRIX_HEIGHT_PX / n_scans))
    pixels = svg.upscale(svg.colormap((scaled + 1.0) / 2.0, svg.GRAY), row_factor, _COLUMN_PX)
    image_height = min(n_scans * row_factor, _MATRIX_MAX_HEIGHT_PX)
    image_width = n_columns * _COLUMN_PX
    labels = [svg.shorten(str(name), _LABEL_MAX_CHARS) for name in design.columns]
    top = 8 + max(svg.text_width_px(label) for label in labels)
    left = 16 + svg.text_width_px(str(n_scans), svg.SMALL_FONT_PX) + 12
    scan_px = image_height / n_scans

    parts = [svg.image(left, top, image_width, image_height, pixels)]
    parts.append(svg.rect(left, top, image_width, image_height, "none", stroke="#444"))
    for index, label in enumerate(labels):
        x = left + (index + 0.5) * _COLUMN_PX + 3
        parts.append(svg.text(x, top - 4, label, rotate=-90))
    for tick in svg.nice_ticks(0, n_scans - 1):
        y = top + (tick + 0.5) * scan_px
        parts.append(svg.line(left - 9, y, left - 6, y))
        parts.append(
            svg.text(left - 11, y + 3, svg.tick_label(tick), size=svg.SMALL_FONT_PX, anchor="end")
        )
    middle = top + image_height / 2
    parts.append(svg.text(10, middle, "scan", size=svg.SMALL_FONT_PX, anchor="middle", rotate=-90))
    mark_px = max(scan_px, 1.5)
    for y in top + np.asarray(censored_scans, dtype=float) * scan_px:
        parts.append(svg.rect(left - 5, y, 4, mark_px, _CENSOR_RGB, class_="censored"))
    height = top + image_height + 8
    if censored_scans:
        note = f"red: {len(censored_scans)} censored scan(s)"
        parts.append(svg.text(left, height + 6, note, size=svg.SMALL_FONT_PX, fill=_CENSOR_RGB))
        height += 14
    width = max(left + image_width + 10, left + svg.text_width_px("red: 000 censored scan(s)", 9))
    return svg.document(width, height, parts, "design matrix")


def design_correlation_svg(design: pd.DataFrame) -> str:
    """Draw the Pearson correlation matrix of the design's columns.

    Parameters
    ----------
    design : pandas.DataFrame
        Scans x regressors.

    Returns
    -------
    str
        SVG text; -1 blue, 0 white, +1 red. Constant columns have no correlation and are
        shown gray ("n/a").
    """
    values = _numeric_matrix(design, "design")
    correlation = column_correlation(values)
    n_columns = values.shape[1]
    cell_px = float(np.clip(360.0 / n_columns, 8.0, 24.0))
    factor = max(1, round(cell_px))
    pixels = svg.upscale(svg.colormap((correlation + 1.0) / 2.0, svg.RED_BLUE), factor, factor)
    size = n_columns * cell_px
    labels = [svg.shorten(str(name), _LABEL_MAX_CHARS) for name in design.columns]
    label_px = max(svg.text_width_px(label) for label in labels)
    left, top = 8 + label_px, 8 + label_px

    parts = [svg.image(left, top, size, size, pixels)]
    parts.append(svg.rect(left, top, size, size, "none", stroke="#444"))
    font = min(svg.FONT_SIZE_PX, max(svg.SMALL_FONT_PX, cell_px))
    for index, label in enumerate(labels):
        centre = (index + 0.5) * cell_px
        parts.append(svg.text(left - 4, top + centre + 3, label, size=font, anchor="end"))
        parts.append(svg.text(left + centre + 3, top - 4, label, size=font, rotate=-90))
    bar_x = left + size + 16
    levels = np.linspace(0.0, 1.0, 101)
    ticks = [((value + 1) / 2, svg.tick_label(value)) for value in (-1.0, -0.5, 0.0, 0.5, 1.0)]
    bar_height = max(size, 100.0)
    parts += svg.vertical_colour_bar(
        bar_x, top, bar_height, svg.colormap(levels, svg.RED_BLUE), ticks, caption="r"
    )
    height = top + max(size, bar_height) + 8
    if np.isnan(correlation).any():
        parts.append(svg.rect(left, height, 10, 10, svg.hex_colour(svg.NAN_RGB)))
        parts.append(svg.text(left + 14, height + 9, "n/a: constant column", size=9))
        height += 18
    width = max(bar_x + 40, left + svg.text_width_px("n/a: constant column", 9) + 20)
    return svg.document(width, height, parts, "design correlation matrix")


def column_correlation(values: np.ndarray) -> np.ndarray:
    """Pearson correlation between the columns of a 2-D array; NaN for constant columns."""
    centred = values - values.mean(axis=0)
    norms = np.sqrt((centred**2).sum(axis=0))
    constant = norms <= 1e-12 * np.maximum(np.abs(values).max(axis=0), 1.0) * len(values)
    safe = np.where(constant, 1.0, norms)
    correlation = np.clip((centred.T @ centred) / np.outer(safe, safe), -1.0, 1.0)
    correlation[constant, :] = np.nan
    correlation[:, constant] = np.nan
    return correlation


def event_timeline_svg(events: pd.DataFrame, scan_duration_s: float) -> str:
    """Draw the events of a run: one row per condition, one bar per event.

    Parameters
    ----------
    events : pandas.DataFrame
        Columns ``onset`` and ``duration`` in seconds, optional ``trial_type`` (other
        columns are ignored). Rows with a non-numeric onset or duration are skipped.
    scan_duration_s : float
        Length of the time axis in seconds (events past it are cut at its end).

    Returns
    -------
    str
        SVG text; zero-duration events are thin vertical lines.
    """
    missing = [name for name in ("onset", "duration") if name not in events.columns]
    if missing:
        raise ValueError(
            f"events need columns 'onset' and 'duration'; missing {missing}, "
            f"got columns {list(events.columns)}"
        )
    if not np.isfinite(scan_duration_s) or scan_duration_s <= 0:
        raise ValueError(f"scan_duration_s must be a positive number, got {scan_duration_s!r}")
    onsets_s = pd.to_numeric(events["onset"], errors="coerce").to_numpy(float)
    durations_s = pd.to_numeric(events["duration"], errors="coerce").to_numpy(float)
    if "trial_type" in events.columns:
        conditions = events["trial_type"].astype("string").fillna("n/a").to_numpy(dtype=object)
    else:
        conditions = np.full(len(events), "events", dtype=object)
    keep = np.isfinite(onsets_s) & np.isfinite(durations_s) & (onsets_s < scan_duration_s)
    names = sorted(set(conditions[keep]))
    labels = [svg.shorten(name, _LABEL_MAX_CHARS) for name in names]
    left = 12 + max((svg.text_width_px(label) for label in labels), default=40.0)
    top, row_px = 8.0, 18.0
    px_per_s = _PLOT_WIDTH_PX / scan_duration_s
    plot_height = row_px * max(len(names), 1)

    parts = [svg.rect(left, top, _PLOT_WIDTH_PX, plot_height, "#fafafa", stroke="#999")]
    for row, (name, label) in enumerate(zip(names, labels, strict=True)):
        colour = _CATEGORY_COLOURS[row % len(_CATEGORY_COLOURS)]
        y = top + row * row_px
        parts.append(svg.text(left - 6, y + row_px / 2 + 3.5, label, anchor="end"))
        chosen = keep & (conditions == name)
        starts_s = np.maximum(onsets_s[chosen], 0.0)
        ends_s = np.minimum(onsets_s[chosen] + durations_s[chosen], scan_duration_s)
        for start_s, end_s in zip(starts_s, ends_s, strict=True):
            x = left + start_s * px_per_s
            if end_s <= start_s:
                parts.append(svg.line(x, y + 2, x, y + row_px - 2, colour, stroke_width="1.5"))
            else:
                width = max((end_s - start_s) * px_per_s, 1.0)
                parts.append(svg.rect(x, y + 2, width, row_px - 4, colour))
    if not names:
        parts.append(svg.text(left + 6, top + 12, "no events"))
    parts += _time_axis(left, top + plot_height, scan_duration_s, px_per_s)
    return svg.document(left + _PLOT_WIDTH_PX + 16, top + plot_height + 36, parts, "events")


def motion_trace_svg(
    framewise_displacement_mm: np.ndarray,
    tr_s: float,
    censored: Sequence[int] = (),
    threshold_mm: float | None = None,
) -> str:
    """Plot framewise displacement over time.

    Parameters
    ----------
    framewise_displacement_mm : numpy.ndarray
        FD per scan in mm; NaN (e.g. the first scan) leaves a gap.
    tr_s : float
        Repetition time in seconds (scan ``i`` is drawn at ``i * tr_s``).
    censored : sequence of int
        0-based indices of censored scans, drawn as red bands.
    threshold_mm : float, optional
        A censoring threshold drawn as a dashed line.

    Returns
    -------
    str
        SVG text.
    """
    fd_mm = np.asarray(framewise_displacement_mm, dtype=float).ravel()
    if fd_mm.size == 0:
        raise ValueError("framewise_displacement_mm is empty; expected one value per scan")
    if not np.isfinite(tr_s) or tr_s <= 0:
        raise ValueError(f"tr_s must be a positive number of seconds, got {tr_s!r}")
    censored_scans = _scan_indices(censored, fd_mm.size)
    duration_s = fd_mm.size * tr_s
    finite = np.isfinite(fd_mm)
    top_mm = max(np.max(fd_mm[finite], initial=0.0), threshold_mm or 0.0) * 1.1 or 1.0
    left, top, plot_height = 52.0, 10.0, 120.0
    px_per_s = _PLOT_WIDTH_PX / duration_s
    px_per_mm = plot_height / top_mm

    parts = [svg.rect(left, top, _PLOT_WIDTH_PX, plot_height, "#ffffff", stroke="#999")]
    band_px = max(tr_s * px_per_s, 1.0)
    for scan in censored_scans:
        x = left + scan * tr_s * px_per_s - band_px / 2
        parts.append(svg.rect(x, top, band_px, plot_height, "#f4b6b6", class_="censored"))
        parts.append(svg.rect(x, top + plot_height, band_px, 4, _CENSOR_RGB))
    for tick in svg.nice_ticks(0.0, top_mm, 5):
        y = top + plot_height - tick * px_per_mm
        parts.append(svg.line(left - 3, y, left, y))
        label = svg.tick_label(tick)
        parts.append(svg.text(left - 5, y + 3, label, size=svg.SMALL_FONT_PX, anchor="end"))
    middle = top + plot_height / 2
    parts.append(
        svg.text(12, middle, "FD (mm)", size=svg.SMALL_FONT_PX, anchor="middle", rotate=-90)
    )
    x_px = left + np.arange(fd_mm.size) * tr_s * px_per_s
    y_px = top + plot_height - np.where(finite, fd_mm, 0.0) * px_per_mm
    path = svg.path_with_gaps(x_px, y_px, finite)
    if path:
        parts.append(
            f'<path d="{path}" fill="none" stroke="#1f4e96" stroke-width="1.2" '
            'stroke-linecap="round" stroke-linejoin="round"/>'
        )
    else:
        parts.append(svg.text(left + 8, top + 16, "no framewise displacement available"))
    if threshold_mm is not None:
        y = top + plot_height - threshold_mm * px_per_mm
        parts.append(svg.line(left, y, left + _PLOT_WIDTH_PX, y, "#555", stroke_dasharray="4 3"))
        label = f"threshold {svg.tick_label(threshold_mm)} mm"
        parts.append(svg.text(left + _PLOT_WIDTH_PX - 4, y - 3, label, size=9, anchor="end"))
    parts += _time_axis(left, top + plot_height + 4, duration_s, px_per_s)
    height = top + plot_height + 40
    if censored_scans:
        note = f"red: {len(censored_scans)} censored scan(s)"
        parts.append(svg.text(left, height, note, size=svg.SMALL_FONT_PX, fill=_CENSOR_RGB))
        height += 8
    return svg.document(left + _PLOT_WIDTH_PX + 16, height, parts, "framewise displacement")


def contrast_vectors_svg(
    contrasts: Mapping[str, Mapping[str, float]] | Mapping[str, Sequence[Mapping[str, float]]],
    columns: Sequence[str],
) -> str:
    """Draw contrast weights over the design's columns, one row per contrast row.

    Parameters
    ----------
    contrasts : mapping
        Contrast name -> weights by column (a t contrast) or a sequence of such mappings
        (the rows of an F contrast, drawn grouped under the name). Missing columns weigh 0.
    columns : sequence of str
        The design's columns, in order.

    Returns
    -------
    str
        SVG text; cells are coloured by weight / max |weight| of their row (blue negative,
        red positive) and show the weight.

    Raises
    ------
    ValueError
        If a contrast puts weights on columns not in ``columns``.
    """
    columns = [str(name) for name in columns]
    groups = [
        (str(name), _contrast_rows(name, spec, columns), not isinstance(spec, Mapping))
        for name, spec in contrasts.items()
    ]
    cell_w, cell_h = 36.0, 18.0
    names = [svg.shorten(name, _LABEL_MAX_CHARS) for name, _, _ in groups]
    labels = [svg.shorten(name, _LABEL_MAX_CHARS) for name in columns]
    left = 18 + max((svg.text_width_px(f"{name} (F)") for name in names), default=40.0)
    top = 8 + max((svg.text_width_px(label) for label in labels), default=20.0)

    parts = []
    for index, label in enumerate(labels):
        parts.append(svg.text(left + (index + 0.5) * cell_w + 3, top - 4, label, rotate=-90))
    y = top
    for (_, rows, is_f), name in zip(groups, names, strict=True):
        group_top = y
        for weights in rows:
            parts += _weight_cells(weights, left, y, cell_w, cell_h)
            y += cell_h
        title = f"{name} (F)" if is_f else name
        middle = (group_top + y) / 2
        parts.append(svg.text(left - 10, middle + 3.5, title, anchor="end"))
        if len(rows) > 1:
            parts.append(
                f'<path d="M{svg.fmt(left - 4)} {svg.fmt(group_top + 2)}h-3V{svg.fmt(y - 2)}h3" '
                'fill="none" stroke="#444"/>'
            )
        y += 4
    if not groups:
        parts.append(svg.text(left, top + 12, "no contrasts"))
        y += cell_h
    width = left + max(len(columns), 1) * cell_w + 10
    return svg.document(width, y + 6, parts, "contrast weights")


def _contrast_rows(
    name: object, spec: Mapping[str, float] | Sequence[Mapping[str, float]], columns: list[str]
) -> list[np.ndarray]:
    """A contrast's rows as weight vectors over ``columns``."""
    if isinstance(spec, Mapping):
        rows = [spec]
    elif isinstance(spec, Sequence) and not isinstance(spec, str) and spec:
        rows = list(spec)
    else:
        raise ValueError(
            f"contrast {name!r}: expected a mapping column -> weight or a non-empty sequence "
            f"of such mappings, got {spec!r}"
        )
    position = {column: index for index, column in enumerate(columns)}
    vectors = []
    for row in rows:
        if not isinstance(row, Mapping):
            raise ValueError(f"contrast {name!r}: each F row must be a mapping, got {row!r}")
        unknown = sorted(str(key) for key in row if str(key) not in position)
        if unknown:
            raise ValueError(
                f"contrast {name!r} has weights on columns not in the design: "
                f"{', '.join(unknown)}; design columns are {columns}"
            )
        vector = np.zeros(len(columns))
        for key, weight in row.items():
            vector[position[str(key)]] = float(weight)
        vectors.append(vector)
    return vectors


def _weight_cells(weights: np.ndarray, left: float, y: float, cell_w: float, cell_h: float):
    """Coloured cells with their numbers for one contrast row."""
    peak = np.abs(weights).max()
    relative = weights / peak if peak > 0 else weights
    colours = svg.colormap((relative + 1.0) / 2.0, svg.RED_BLUE)
    parts = []
    for index, (weight, colour) in enumerate(zip(weights, colours, strict=True)):
        x = left + index * cell_w
        parts.append(svg.rect(x, y, cell_w, cell_h, svg.hex_colour(colour), stroke="#ccc"))
        if weight != 0:
            ink = "#fff" if abs(relative[index]) > 0.75 else "#111"
            label = f"{weight:.3g}"
            parts.append(
                svg.text(
                    x + cell_w / 2, y + cell_h / 2 + 3, label, size=9, anchor="middle", fill=ink
                )
            )
    return parts


def _numeric_matrix(frame: pd.DataFrame, what: str) -> np.ndarray:
    """A data frame's values as a float array, refusing empty frames."""
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f"{what} is empty: shape {frame.shape}, expected scans x columns")
    try:
        return frame.to_numpy(dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must hold numbers only: {error}") from None


def _scan_indices(censored: Sequence[int], n_scans: int) -> list[int]:
    """Sorted unique scan indices, checked against the number of scans."""
    scans = sorted({int(index) for index in censored})
    outside = [index for index in scans if not 0 <= index < n_scans]
    if outside:
        raise ValueError(f"censored scan indices {outside} are outside 0..{n_scans - 1}")
    return scans


def _time_axis(left: float, y: float, duration_s: float, px_per_s: float) -> list[str]:
    """Ticks and label of a horizontal time axis in seconds."""
    parts = []
    for tick in svg.nice_ticks(0.0, duration_s, 9):
        x = left + tick * px_per_s
        parts.append(svg.line(x, y, x, y + 3))
        parts.append(svg.text(x, y + 13, svg.tick_label(tick), size=9, anchor="middle"))
    parts.append(svg.text(left + _PLOT_WIDTH_PX / 2, y + 26, "time (s)", size=9, anchor="middle"))
    return parts
