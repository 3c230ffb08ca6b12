"""Figures of surface z maps: lateral and medial views of each hemisphere, or a histogram.

:func:`surface_map_svg` draws a thresholded map on the hemispheres' meshes (left lateral,
right lateral, left medial, right medial; PNG pictures from
:mod:`bids_glm.report.mesh_raster` inside one SVG, with a colour bar). Without a mesh,
:func:`z_histogram_svg` shows the distribution of the analysed vertices' z and the
threshold. Both return self-contained SVG text, like the other report figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bids_glm.image.mesh import Mesh
from bids_glm.report import svg
from bids_glm.report.mesh_raster import (
    LATERAL_LEFT,
    LATERAL_RIGHT,
    MEDIAL_LEFT,
    MEDIAL_RIGHT,
    projected_size_mm,
    render_mesh,
)

PANEL_WIDTH_PX = 240
VIEWS = {"L": (LATERAL_LEFT, MEDIAL_LEFT), "R": (LATERAL_RIGHT, MEDIAL_RIGHT)}
HISTOGRAM_BINS = 60


def face_values(mesh: Mesh, values: np.ndarray) -> np.ndarray:
    """Per face: the mean of its vertices' non-zero values (0 when all three are 0)."""
    corners = np.asarray(values, dtype=np.float64)[mesh.triangles]
    shown = corners != 0
    count = shown.sum(axis=1)
    return np.where(count > 0, corners.sum(axis=1) / np.maximum(count, 1), 0.0)


def surface_map_svg(
    meshes: Sequence[tuple[str, Mesh]],
    thresholded: Sequence[np.ndarray],
    z_threshold: float,
    title: str = "",
) -> str:
    """Lateral and medial views of each hemisphere with its thresholded z map.

    Parameters
    ----------
    meshes : sequence of (hemisphere, Mesh)
        ``("L", mesh)`` and/or ``("R", mesh)``.
    thresholded : sequence of ndarray
        Per hemisphere, z where it passes the threshold, 0 elsewhere.
    z_threshold : float
        The height threshold (the colour scale starts there).
    title : str
        Shown above the views.
    """
    vmax = max([float(np.abs(v).max(initial=0.0)) for v in thresholded] + [z_threshold + 1e-6])
    widest_mm = max(
        projected_size_mm(mesh, view)[0] for hemi, mesh in meshes for view in VIEWS[hemi]
    )
    px_per_mm = PANEL_WIDTH_PX / max(widest_mm, 1e-6)
    top, gap, label_px = 22.0, 8.0, 14.0
    pictures = []  # per hemisphere: lateral, medial
    for (hemi, mesh), values in zip(meshes, thresholded, strict=True):
        rgba = svg.cold_hot(face_values(mesh, values), z_threshold, vmax)
        pictures.append([render_mesh(mesh, rgba, view, px_per_mm) for view in VIEWS[hemi]])
    row_heights = [max(p[row].shape[0] for p in pictures) for row in (0, 1)]
    parts = [svg.text(4, 14, title, size=12)] if title else []
    for column, ((hemi, _), views) in enumerate(zip(meshes, pictures, strict=True)):
        x = 4 + column * (PANEL_WIDTH_PX + gap)
        for row, picture in enumerate(views):
            y = top + label_px + row * (row_heights[0] + label_px + gap)
            height, width = picture.shape[:2]
            parts.append(svg.image(x, y, width, height, picture))
            side = "lateral" if row == 0 else "medial"
            parts.append(svg.text(x, y - 3, f"{hemi} {side}", size=svg.SMALL_FONT_PX))
    bar_x = 4 + len(meshes) * (PANEL_WIDTH_PX + gap) + 4
    levels = np.linspace(z_threshold, vmax, 64)
    colours = svg.cold_hot(levels, z_threshold, vmax)[:, :3]
    ticks = [(0.0, svg.tick_label(round(z_threshold, 2))), (1.0, svg.tick_label(round(vmax, 2)))]
    bar_height = max(row_heights[0], 60.0)
    parts += svg.vertical_colour_bar(
        bar_x, top + label_px, bar_height, colours, ticks, caption="z"
    )
    height = top + sum(row_heights) + 2 * label_px + gap + 8
    width = bar_x + 50
    return svg.document(width, height, parts, title or "surface statistic map")


def z_histogram_svg(z_values: np.ndarray, z_threshold: float, title: str = "") -> str:
    """Histogram of the analysed vertices' z, with the threshold marked."""
    z_values = np.asarray(z_values, dtype=np.float64)
    z_values = z_values[np.isfinite(z_values)]
    low = float(min(z_values.min(initial=0.0), -4.0))
    high = float(max(z_values.max(initial=0.0), 4.0, z_threshold + 0.5))
    counts, edges = np.histogram(z_values, bins=HISTOGRAM_BINS, range=(low, high))
    left, top, plot_w, plot_h = 40.0, 24.0, 420.0, 140.0
    scale_x = plot_w / (high - low)
    tallest = max(int(counts.max(initial=0)), 1)
    parts = [svg.text(4, 14, title, size=12)] if title else []
    for count, start, stop in zip(counts, edges[:-1], edges[1:], strict=True):
        bar_h = plot_h * count / tallest
        colour = "#c83200" if start >= z_threshold else "#8a8a8a"
        x = left + (start - low) * scale_x
        parts.append(svg.rect(x, top + plot_h - bar_h, (stop - start) * scale_x, bar_h, colour))
    parts.append(svg.line(left, top + plot_h, left + plot_w, top + plot_h))
    for tick in svg.nice_ticks(low, high):
        x = left + (tick - low) * scale_x
        parts.append(svg.line(x, top + plot_h, x, top + plot_h + 4))
        parts.append(svg.text(x - 6, top + plot_h + 15, svg.tick_label(tick), size=9))
    if np.isfinite(z_threshold):
        x = left + (z_threshold - low) * scale_x
        parts.append(svg.line(x, top, x, top + plot_h, stroke="#c83200"))
        parts.append(svg.text(x + 3, top + 10, f"z = {z_threshold:.2f}", size=9))
    parts.append(svg.text(left, top + plot_h + 30, "z (analysed vertices)", size=9))
    parts.append(svg.text(4, top + 10, str(tallest), size=9))
    return svg.document(left + plot_w + 10, top + plot_h + 40, parts, title or "z histogram")
