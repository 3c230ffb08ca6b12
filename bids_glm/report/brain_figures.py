"""Brain images for the report: mask outlines, orthogonal slices and glass-brain projections.

Volumes are 3-D arrays in voxel order with a 4x4 voxel-to-mm ``affine``. For display they
are first brought to the closest RAS+ voxel order by axis permutations and flips (no
resampling), so left is on the left of coronal and axial views (neurological convention),
anterior on the right of sagittal views and superior at the top. Millimetre coordinates are
always computed with the affine. NaN voxels are empty. Each voxel is drawn as a block of
repeated pixels whose size follows the voxel size, so anisotropic voxels keep their aspect.
"""

from __future__ import annotations

import numpy as np

from bids_glm.report import svg

_SLICE_PANEL_PX = 200.0
_MASK_PANEL_PX = 140.0
_GAP_PX = 12.0
_DARK_GRAY = 48
_MASK_EDGE_RGB = (255, 48, 48)
_GLASS_FILL = 238
_GLASS_EDGE = 120
_VIEWS = ("sagittal", "coronal", "axial")
_VIEW_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # the world axis each view cuts
_VIEW_LETTERS = {"sagittal": ("P", "A"), "coronal": ("L", "R"), "axial": ("L", "R")}


def mask_outline_svg(
    underlay: np.ndarray, mask: np.ndarray, affine: np.ndarray, n_slices: int = 7
) -> str:
    """Draw a mask's boundary over axial slices of an underlay (e.g. the mean BOLD image).

    Parameters
    ----------
    underlay : numpy.ndarray
        3-D image shown in gray, windowed to its 2nd-98th percentiles.
    mask : numpy.ndarray
        3-D mask of the same shape (nonzero = inside).
    affine : numpy.ndarray
        4x4 voxel-to-mm matrix shared by both.
    n_slices : int
        Number of axial slices, evenly spaced inside the mask's inferior-superior extent.

    Returns
    -------
    str
        SVG text, one panel per slice labelled with its z in mm.
    """
    underlay, affine = _check_volume(underlay, affine, "underlay")
    mask = _check_same_shape(mask, underlay, "mask")
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    underlay_ras, ras_affine = _to_ras(underlay, affine)
    inside = _to_ras(np.nan_to_num(mask) != 0, affine)[0]
    if not inside.any():
        raise ValueError("mask is empty: no nonzero voxel to outline")
    window = display_window(underlay)
    voxel_mm = _voxel_sizes(ras_affine)
    occupied = [np.flatnonzero(inside.any(axis=other)) for other in ((1, 2), (0, 2), (0, 1))]
    z_indices = np.unique(
        np.rint(np.linspace(occupied[2][0], occupied[2][-1], n_slices + 2)[1:-1]).astype(int)
    )
    crop = tuple(
        slice(max(found[0] - 2, 0), min(found[-1] + 3, size))
        for found, size in zip(occupied[:2], inside.shape[:2], strict=True)
    )
    crop_mm = [
        (part.stop - part.start) * size for part, size in zip(crop, voxel_mm[:2], strict=True)
    ]
    px_per_mm = _MASK_PANEL_PX / max(crop_mm)
    factors = _repeat_factors((voxel_mm[1], voxel_mm[0]), px_per_mm)
    panel_w, panel_h = crop_mm[0] * px_per_mm, crop_mm[1] * px_per_mm

    parts = []
    for index, z in enumerate(z_indices):
        pixels = svg.upscale(_display(_gray_rgb(underlay_ras[crop][:, :, z], window)), *factors)
        edge = svg.boundary(svg.upscale(_display(inside[crop][:, :, z]), *factors))
        pixels[edge] = _MASK_EDGE_RGB
        x = index * (panel_w + _GAP_PX / 2)
        parts.append(svg.image(x, 0, panel_w, panel_h, pixels))
        z_mm = (ras_affine @ np.array([0.0, 0.0, z, 1.0]))[2]
        parts.append(svg.text(x + panel_w / 2, panel_h + 13, f"z = {_mm(z_mm)}", anchor="middle"))
    width = len(z_indices) * (panel_w + _GAP_PX / 2) - _GAP_PX / 2
    parts.append(svg.text(0, panel_h + 28, "left is left (neurological)", size=svg.SMALL_FONT_PX))
    return svg.document(max(width, 160), panel_h + 34, parts, "brain mask outline")


def stat_slices_svg(
    stat: np.ndarray,
    underlay: np.ndarray | None,
    affine: np.ndarray,
    threshold: float,
    cut_mm: tuple[float, float, float] | None = None,
    title: str = "",
    vmax: float | None = None,
    window: tuple[float, float] | None = None,
) -> str:
    """Draw a thresholded statistic map on sagittal, coronal and axial slices.

    Parameters
    ----------
    stat : numpy.ndarray
        3-D statistic map (e.g. z); NaN is empty.
    underlay : numpy.ndarray or None
        3-D image of the same shape shown in gray (2nd-98th percentile window); dark gray
        background if None.
    affine : numpy.ndarray
        4x4 voxel-to-mm matrix.
    threshold : float
        Voxels with ``|stat| >= threshold`` are coloured (red-yellow positive, blue-cyan
        negative); the others are not.
    cut_mm : tuple of float, optional
        Slice position (x, y, z) in mm; default: the voxel of largest ``|stat|``.
    title : str
        Caption above the slices (escaped).
    vmax : float, optional
        Top of the colour scale (e.g. shared by maps shown side by side); default: the
        largest ``|stat|``. Either way it is raised a little above ``threshold`` when not
        above it.
    window : tuple of float, optional
        The underlay's gray window (`display_window`, computed if None).

    Returns
    -------
    str
        SVG text with a colour bar (threshold marked) and the cut coordinates in mm.
    """
    stat, affine = _check_volume(stat, affine, "stat")
    threshold = _check_threshold(threshold)
    stat_ras, ras_affine = _to_ras(stat, affine)
    if underlay is None:
        underlay_ras, window = None, (0.0, 1.0)
    else:
        underlay = _check_same_shape(underlay, stat, "underlay")
        underlay_ras = _to_ras(underlay, affine)[0]
        window = display_window(underlay) if window is None else window
    magnitude = np.abs(_finite(stat_ras))
    cut = _cut_voxel(magnitude, ras_affine, cut_mm)
    cut_world = (ras_affine @ np.append(cut, 1.0))[:3]
    vmax = _colour_limit(float(magnitude.max()) if vmax is None else _check_vmax(vmax), threshold)
    panels = []
    for view in _VIEWS:
        axis = _VIEW_AXIS[view]
        plane = _plane(stat_ras, axis, cut[axis])
        if underlay_ras is None:
            under = np.full((*plane.shape, 3), _DARK_GRAY, dtype=np.uint8)
        else:
            under = _gray_rgb(_plane(underlay_ras, axis, cut[axis]), window)
        pixels = _blend(under, svg.cold_hot(plane, threshold, vmax))
        label = f"{'xyz'[axis]} = {_mm(cut_world[axis])}"
        panels.append((view, pixels, label))
    return _three_views(panels, stat_ras.shape, ras_affine, cut, vmax, threshold, title)


def glass_brain_svg(
    stat: np.ndarray,
    affine: np.ndarray,
    threshold: float,
    brain_mask: np.ndarray | None = None,
    title: str = "",
    vmax: float | None = None,
) -> str:
    """Draw the maximum-intensity projections of a thresholded statistic map.

    Parameters
    ----------
    stat : numpy.ndarray
        3-D statistic map; NaN is empty.
    affine : numpy.ndarray
        4x4 voxel-to-mm matrix.
    threshold : float
        Voxels with ``|stat| < threshold`` are dropped before projecting.
    brain_mask : numpy.ndarray, optional
        Its projected outline is drawn as the "glass"; default: the finite nonzero voxels
        of ``stat``.
    title : str
        Caption above the projections (escaped).
    vmax : float, optional
        Top of the colour scale (e.g. shared by maps shown side by side); default: the
        largest ``|stat|`` above ``threshold``. Either way it is raised a little above
        ``threshold`` when not above it.

    Returns
    -------
    str
        SVG text: sagittal, coronal and axial projections, each pixel showing the value of
        largest magnitude along the projection (its sign kept).
    """
    stat, affine = _check_volume(stat, affine, "stat")
    threshold = _check_threshold(threshold)
    if brain_mask is None:
        inside = np.isfinite(stat) & (stat != 0)
    else:
        inside = np.nan_to_num(_check_same_shape(brain_mask, stat, "brain_mask")) != 0
    stat_ras, ras_affine = _to_ras(stat, affine)
    inside_ras = _to_ras(inside, affine)[0]
    finite = _finite(stat_ras)
    magnitude = np.abs(finite)
    kept = np.where(magnitude >= threshold, finite, 0)
    magnitude[magnitude < threshold] = 0
    vmax = _colour_limit(float(magnitude.max()) if vmax is None else _check_vmax(vmax), threshold)
    panels = []
    for view in _VIEWS:
        axis = _VIEW_AXIS[view]
        extreme = np.take_along_axis(
            kept, np.expand_dims(magnitude.argmax(axis=axis), axis), axis=axis
        ).squeeze(axis)
        glass = inside_ras.any(axis=axis)
        background = np.where(glass, _GLASS_FILL, 255).astype(np.uint8)
        pixels = _blend(
            np.repeat(background[..., None], 3, axis=2), svg.cold_hot(extreme, threshold, vmax)
        )
        panels.append((view, pixels, glass))
    return _three_views(panels, stat_ras.shape, ras_affine, None, vmax, threshold, title)


def _three_views(panels, shape, ras_affine, cut, vmax, threshold, title) -> str:
    """Lay out sagittal, coronal and axial panels with letters, labels and a colour bar.

    Each panel is ``(view, rgb plane in RAS voxel axes, label or projected mask)``; a
    boolean third item is outlined (glass brain), a string is printed under the panel.
    """
    voxel_mm = _voxel_sizes(ras_affine)
    extents_mm = np.asarray(shape) * voxel_mm
    px_per_mm = _SLICE_PANEL_PX / extents_mm.max()
    top = 22.0 if title else 6.0
    parts = [svg.text(0, 14, title, size=12, weight="bold")] if title else []
    x = 0.0
    panel_heights = []
    for view, pixels, extra in panels:
        across, up = [axis for axis in range(3) if axis != _VIEW_AXIS[view]]
        factors = _repeat_factors((voxel_mm[up], voxel_mm[across]), px_per_mm)
        image = svg.upscale(_display(pixels), *factors)
        if isinstance(extra, np.ndarray):
            edge = svg.boundary(svg.upscale(_display(extra), *factors))
            image[edge] = _GLASS_EDGE
        width, height = extents_mm[across] * px_per_mm, extents_mm[up] * px_per_mm
        parts.append(svg.image(x, top, width, height, image))
        ink = "#fff" if cut is not None else "#333"
        low, high = _VIEW_LETTERS[view]
        parts.append(svg.text(x + 3, top + 13, low, size=11, weight="bold", fill=ink))
        parts.append(
            svg.text(x + width - 3, top + 13, high, size=11, weight="bold", fill=ink, anchor="end")
        )
        if cut is not None:
            cx = x + (cut[across] + 0.5) * voxel_mm[across] * px_per_mm
            cy = top + height - (cut[up] + 0.5) * voxel_mm[up] * px_per_mm
            style = {"stroke_width": "0.6", "stroke_opacity": "0.6"}
            parts.append(svg.line(cx, top, cx, top + height, "#9cf", **style))
            parts.append(svg.line(x, cy, x + width, cy, "#9cf", **style))
            parts.append(svg.text(x + width / 2, top + height + 13, extra, anchor="middle"))
        panel_heights.append(height)
        x += width + _GAP_PX
    bar_height = max(max(panel_heights), 100.0)
    levels = np.linspace(-vmax, vmax, 201)
    colours = svg.cold_hot(levels, threshold, vmax)
    colours[colours[:, 3] == 0] = (215, 215, 215, 255)
    ticks = [
        (0.5 + value / (2 * vmax), svg.tick_label(round(value, 2))) for value in (-vmax, vmax)
    ]
    if threshold > 0:
        ticks += [
            (0.5 + sign * threshold / (2 * vmax), f"{sign * threshold:+.2f}") for sign in (-1, 1)
        ]
    parts += svg.vertical_colour_bar(x + 4, top, bar_height, colours[:, :3], ticks)
    parts.append(svg.text(x + 4, top + bar_height + 13, f"|value| \u2265 {threshold:.2f}", size=9))
    height = top + max(bar_height, max(panel_heights) + 16) + 20
    width = max(
        x + 4 + svg.text_width_px(f"|value| = {threshold:.2f}", 9), svg.text_width_px(title, 12)
    )
    return svg.document(width + 6, height, parts, title or "statistic map")


def _check_volume(volume: np.ndarray, affine: np.ndarray, what: str):
    """A 3-D float volume and a 4x4 float affine, or a ValueError saying what was wrong."""
    volume = np.asarray(volume)
    affine = np.asarray(affine, dtype=float)
    if volume.ndim != 3 or min(volume.shape) == 0:
        raise ValueError(f"{what} must be a non-empty 3-D array, got shape {volume.shape}")
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {affine.shape}")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError("affine is singular: its 3x3 part has determinant 0")
    if not np.issubdtype(volume.dtype, np.floating):
        volume = volume.astype(np.float32)
    return volume, affine


def _check_same_shape(volume: np.ndarray, reference: np.ndarray, what: str) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.shape != reference.shape:
        raise ValueError(f"{what} must have shape {reference.shape}, got {volume.shape}")
    return volume


def _check_threshold(threshold: float) -> float:
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    return threshold


def _to_ras(volume: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute and flip voxel axes so they run along +x, +y, +z (a view, no resampling).

    When the affine is too oblique for each voxel axis to have its own world axis, the
    voxel order is kept as it is (assumed RAS-like).
    """
    world_axis = np.abs(affine[:3, :3]).argmax(axis=0)
    order = np.argsort(world_axis) if len(set(world_axis.tolist())) == 3 else np.arange(3)
    volume = np.transpose(volume, order)
    affine = affine[:, [*order.tolist(), 3]].copy()
    for axis in range(3):
        if affine[axis, axis] < 0:
            volume = np.flip(volume, axis)
            affine[:, 3] += affine[:, axis] * (volume.shape[axis] - 1)
            affine[:, axis] *= -1
    return volume, affine


def _voxel_sizes(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((affine[:3, :3] ** 2).sum(axis=0))


def _display(plane: np.ndarray) -> np.ndarray:
    """A plane indexed (horizontal, upward) as an image array indexed (row down, column)."""
    return np.ascontiguousarray(np.swapaxes(plane, 0, 1)[::-1])


def _plane(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """The plane ``index`` of ``volume`` across ``axis``, as a view (``np.take`` copies a
    reoriented volume whole first: ~3 ms a plane on the MNI grid)."""
    return volume[(slice(None),) * axis + (int(index),)]


def _repeat_factors(pixel_mm: tuple[float, float], px_per_mm: float) -> tuple[int, int]:
    """Integer (row, column) repetitions that make one voxel about its size on screen."""
    return tuple(max(1, round(size * px_per_mm)) for size in pixel_mm)


def display_window(underlay: np.ndarray) -> tuple[float, float]:
    """The gray display window of an underlay: the 2nd and 98th percentiles of its finite
    nonzero voxels (~15 ms on the MNI grid: computed once per underlay by callers that draw
    many maps over it)."""
    values = underlay[np.isfinite(underlay) & (underlay != 0)]
    if values.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(values, [2.0, 98.0])
    return float(low), float(max(high, low + 1e-12))


def _gray_rgb(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """8-bit gray RGB of ``values`` within ``window``; NaN is black."""
    low, high = window
    scaled = (np.nan_to_num(values, nan=low) - low) / (high - low)
    gray = np.rint(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def _blend(rgb: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Paint the opaque pixels of ``rgba`` over ``rgb`` (alpha is 0 or 255)."""
    shown = rgba[..., 3] > 0
    out = rgb.copy()
    out[shown] = rgba[shown, :3]
    return out


def _finite(stat: np.ndarray) -> np.ndarray:
    """A copy of ``stat`` with NaN and infinite values set to 0 (empty)."""
    return np.where(np.isfinite(stat), stat, 0)


def _cut_voxel(magnitude: np.ndarray, affine: np.ndarray, cut_mm) -> np.ndarray:
    """Voxel indices of the cut: nearest to ``cut_mm``, else the largest ``magnitude``."""
    if cut_mm is None:
        if magnitude.max() <= 0:
            return np.asarray(magnitude.shape) // 2
        return np.asarray(np.unravel_index(magnitude.argmax(), magnitude.shape))
    point = np.asarray(cut_mm, dtype=float)
    if point.shape != (3,) or not np.isfinite(point).all():
        raise ValueError(f"cut_mm must be three finite mm coordinates, got {cut_mm!r}")
    voxel = np.rint(np.linalg.solve(affine, np.append(point, 1.0))[:3]).astype(int)
    return np.clip(voxel, 0, np.asarray(magnitude.shape) - 1)


def _check_vmax(vmax: float) -> float:
    """A given top of the colour scale: a finite number >= 0."""
    value = float(vmax)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"vmax must be a finite number >= 0, got {vmax!r}")
    return value


def _colour_limit(peak: float, threshold: float) -> float:
    """The top of the colour scale: the largest |stat|, or a little above the threshold."""
    return peak if peak > threshold else threshold + max(threshold * 0.1, 1.0)


def _mm(value: float) -> str:
    """A coordinate in mm with at most one decimal."""
    text = f"{value:.1f}".rstrip("0").rstrip(".")
    return ("0" if text == "-0" else text) + " mm"
