"""Building blocks for the report's figures: SVG elements, a PNG encoder and colormaps.

Figures are written as SVG text by hand (matplotlib's import alone would cost more than
the whole report may take). Raster content (design matrices, brain slices) is encoded as
8-bit PNG from numpy arrays and embedded as ``data:`` URIs, so every figure is one
self-contained SVG string with no external resource.

Every string taken from data must go through :func:`esc` (element text) or :func:`attr`
(attribute values): these are the only two ways text enters a figure here.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Iterable, Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np

FONT_FAMILY = "DejaVu Sans, Liberation Sans, Arial, Helvetica, sans-serif"
FONT_SIZE_PX = 10
SMALL_FONT_PX = 9
CHAR_WIDTH_EM = 0.6  # generous mean advance of a sans-serif glyph, used to reserve space

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {3: 2, 4: 6}  # channels -> PNG colour type (RGB, RGBA)

# Colormap anchors: (position in [0, 1], (r, g, b)) with 8-bit channels.
GRAY = ((0.0, (0, 0, 0)), (1.0, (255, 255, 255)))
RED_BLUE = (
    (0.0, (33, 102, 172)),
    (0.25, (103, 169, 207)),
    (0.5, (247, 247, 247)),
    (0.75, (239, 138, 98)),
    (1.0, (178, 24, 43)),
)
HOT = ((0.0, (200, 0, 0)), (0.5, (255, 128, 0)), (1.0, (255, 255, 0)))
COLD = ((0.0, (0, 0, 200)), (0.5, (0, 128, 255)), (1.0, (0, 255, 255)))
NAN_RGB = (160, 160, 160)


def esc(text: object) -> str:
    """Escape text for an SVG/XML element body.

    Parameters
    ----------
    text : object
        Converted with ``str`` first.

    Returns
    -------
    str
        ``&``, ``<`` and ``>`` replaced by entities.
    """
    return escape(str(text))


def attr(text: object) -> str:
    """Quote and escape text for use as an attribute value (quotes included).

    Parameters
    ----------
    text : object
        Converted with ``str`` first.

    Returns
    -------
    str
        The value in double (or single) quotes with ``&<>"`` escaped.
    """
    return quoteattr(str(text))


def fmt(value: float) -> str:
    """Format a coordinate compactly (two decimals, no trailing zeros)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def text_width_px(text: str, font_px: float = FONT_SIZE_PX) -> float:
    """Estimate the rendered width of ``text`` in a sans-serif font (an upper-ish bound)."""
    return len(text) * font_px * CHAR_WIDTH_EM


def shorten(text: str, max_chars: int) -> str:
    """Cut ``text`` to ``max_chars`` characters, ending with an ellipsis if it was cut."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "\u2026"


def document(width: float, height: float, body: Iterable[str], label: str = "") -> str:
    """Wrap SVG elements into a self-contained ``<svg>`` document.

    Parameters
    ----------
    width, height : float
        Natural size in px (also the viewBox).
    body : iterable of str
        SVG elements, already escaped.
    label : str
        Accessible name of the figure (escaped here).

    Returns
    -------
    str
        The SVG text.
    """
    w, h = fmt(width), fmt(height)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" font-family={attr(FONT_FAMILY)} font-size="{FONT_SIZE_PX}" '
        f'role="img" aria-label={attr(label)}>'
    )
    return head + "".join(body) + "</svg>"


def text(
    x: float,
    y: float,
    content: str,
    *,
    size: float = FONT_SIZE_PX,
    anchor: str = "start",
    rotate: float = 0.0,
    weight: str = "normal",
    fill: str = "#222",
) -> str:
    """A ``<text>`` element; ``content`` is escaped here, ``rotate`` is in degrees about (x, y)."""
    transform = f' transform="rotate({fmt(rotate)} {fmt(x)} {fmt(y)})"' if rotate else ""
    bold = f' font-weight="{weight}"' if weight != "normal" else ""
    return (
        f'<text x="{fmt(x)}" y="{fmt(y)}" font-size="{fmt(size)}" text-anchor="{anchor}" '
        f'fill="{fill}"{bold}{transform}>{esc(content)}</text>'
    )


def line(x1: float, y1: float, x2: float, y2: float, stroke: str = "#444", **extra: str) -> str:
    """A ``<line>``; ``extra`` keyword attributes use ``_`` for ``-`` (``stroke_width``)."""
    more = "".join(f" {key.replace('_', '-')}={attr(value)}" for key, value in extra.items())
    return (
        f'<line x1="{fmt(x1)}" y1="{fmt(y1)}" x2="{fmt(x2)}" y2="{fmt(y2)}" '
        f'stroke="{stroke}"{more}/>'
    )


def rect(x: float, y: float, width: float, height: float, fill: str, **extra: str) -> str:
    """A ``<rect>``; ``extra`` keyword attributes use ``_`` for ``-`` (``class_`` for class)."""
    more = "".join(
        f" {key.rstrip('_').replace('_', '-')}={attr(value)}" for key, value in extra.items()
    )
    return (
        f'<rect x="{fmt(x)}" y="{fmt(y)}" width="{fmt(width)}" height="{fmt(height)}" '
        f'fill="{fill}"{more}/>'
    )


def image(x: float, y: float, width: float, height: float, rgb: np.ndarray) -> str:
    """An ``<image>`` showing an RGB(A) array stretched to ``width`` x ``height`` px."""
    return (
        f'<image x="{fmt(x)}" y="{fmt(y)}" width="{fmt(width)}" height="{fmt(height)}" '
        f'preserveAspectRatio="none" image-rendering="optimizeSpeed" '
        f'href="{png_data_uri(rgb)}"/>'
    )


def hex_colour(rgb: Sequence[float]) -> str:
    """``(r, g, b)`` with 8-bit channels as ``#rrggbb``."""
    r, g, b = (round(float(c)) for c in rgb[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def encode_png(pixels: np.ndarray, compression: int = 6) -> bytes:
    """Encode an 8-bit RGB or RGBA image as PNG.

    Parameters
    ----------
    pixels : numpy.ndarray
        ``(rows, columns, 3 or 4)`` array of ``uint8``; row 0 is the top of the image.
    compression : int
        zlib level.

    Returns
    -------
    bytes
        A complete PNG file (unfiltered scanlines, one IDAT chunk).
    """
    if pixels.ndim != 3 or pixels.shape[2] not in _PNG_COLOUR_TYPES or pixels.dtype != np.uint8:
        raise ValueError(
            "expected a (rows, columns, 3|4) uint8 array, got "
            f"shape {pixels.shape} dtype {pixels.dtype}"
        )
    rows, columns, channels = pixels.shape
    if rows == 0 or columns == 0:
        raise ValueError(f"cannot encode an empty image of shape {pixels.shape}")
    scanlines = np.zeros((rows, 1 + columns * channels), dtype=np.uint8)  # filter byte 0
    scanlines[:, 1:] = pixels.reshape(rows, columns * channels)
    header = struct.pack(">IIBBBBB", columns, rows, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines.tobytes(), compression))
        + _png_chunk(b"IEND", b"")
    )


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def png_data_uri(pixels: np.ndarray) -> str:
    """The PNG encoding of ``pixels`` as a base64 ``data:`` URI."""
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


def colormap(
    values: np.ndarray,
    anchors: Sequence[tuple[float, tuple[int, int, int]]],
    nan_rgb: tuple[int, int, int] = NAN_RGB,
) -> np.ndarray:
    """Map values in [0, 1] to 8-bit RGB by linear interpolation between anchor colours.

    Parameters
    ----------
    values : numpy.ndarray
        Any shape; clipped to [0, 1]; NaN gets ``nan_rgb``.
    anchors : sequence of (position, (r, g, b))
        Increasing positions from 0 to 1.
    nan_rgb : tuple of int
        Colour of NaN values.

    Returns
    -------
    numpy.ndarray
        ``values.shape + (3,)`` uint8.
    """
    positions = np.array([position for position, _ in anchors], dtype=float)
    colours = np.array([colour for _, colour in anchors], dtype=float)
    flat = np.clip(np.asarray(values, dtype=float).ravel(), 0.0, 1.0)
    rgb = np.empty((flat.size, 3))
    for channel in range(3):
        rgb[:, channel] = np.interp(flat, positions, colours[:, channel])
    rgb[np.isnan(flat)] = nan_rgb
    return np.rint(rgb).astype(np.uint8).reshape(*np.shape(values), 3)


def cold_hot(values: np.ndarray, threshold: float, vmax: float) -> np.ndarray:
    """Colour a statistic map: red-yellow above ``threshold``, blue-cyan below ``-threshold``.

    Parameters
    ----------
    values : numpy.ndarray
        Statistic values (NaN allowed).
    threshold : float
        Values with ``|v| < threshold`` (and NaN) are transparent.
    vmax : float
        ``|v| >= vmax`` gets the end colour (yellow or cyan).

    Returns
    -------
    numpy.ndarray
        ``values.shape + (4,)`` uint8 RGBA; alpha is 255 where shown, 0 elsewhere.
    """
    values = np.asarray(values, dtype=float)
    magnitude = np.abs(values)
    span = max(vmax - threshold, 1e-12)
    position = (magnitude - threshold) / span
    rgba = np.zeros((*values.shape, 4), dtype=np.uint8)
    shown = magnitude >= threshold  # False for NaN
    positive = shown & (values > 0)
    negative = shown & (values < 0)
    rgba[positive, :3] = colormap(position[positive], HOT)
    rgba[negative, :3] = colormap(position[negative], COLD)
    rgba[positive | negative, 3] = 255
    return rgba


def upscale(pixels: np.ndarray, row_factor: int, column_factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement by repeating rows and columns."""
    return np.repeat(np.repeat(pixels, row_factor, axis=0), column_factor, axis=1)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of a 2-D boolean mask that touch a pixel outside it (4-neighbourhood)."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def path_with_gaps(x_px: np.ndarray, y_px: np.ndarray, finite: np.ndarray) -> str:
    """Path data (``d``) through the points where ``finite`` is True, restarted after gaps.

    A lone point between gaps gets a tiny segment so that its round cap shows as a dot.
    """
    commands = []
    run_length = 0
    for x, y, ok in zip(x_px.tolist(), y_px.tolist(), finite.tolist(), strict=True):
        if ok:
            commands.append(f"{'L' if run_length else 'M'}{x:.1f} {y:.1f}")
            run_length += 1
            continue
        if run_length == 1:
            commands.append("h0.01")
        run_length = 0
    if run_length == 1:
        commands.append("h0.01")
    return "".join(commands)


def nice_ticks(low: float, high: float, max_ticks: int = 6) -> np.ndarray:
    """Round tick positions (1, 2, 2.5 or 5 times a power of ten) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return np.array([low]) if math.isfinite(low) else np.array([])
    raw_step = (high - low) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw_step))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw_step)
    first = math.ceil(low / step - 1e-9) * step
    ticks = np.arange(first, high + step * 1e-6, step)
    return np.round(ticks, 10)


def tick_label(value: float) -> str:
    """A tick's label: integers without decimals, others with up to 3 significant digits."""
    return str(round(value)) if abs(value - round(value)) < 1e-9 else f"{value:.3g}"


def vertical_colour_bar(
    x: float,
    y: float,
    height: float,
    rgb_column: np.ndarray,
    ticks: Sequence[tuple[float, str]],
    *,
    width: float = 12.0,
    caption: str = "",
) -> list[str]:
    """A vertical colour bar: the colours bottom (first) to top (last), ticks on its right.

    Parameters
    ----------
    x, y : float
        Top-left corner in px.
    height : float
        Height in px.
    rgb_column : numpy.ndarray
        ``(n, 3 or 4)`` uint8 colours from the bottom to the top of the bar.
    ticks : sequence of (fraction, label)
        ``fraction`` 0 is the bottom, 1 the top; labels are escaped here.
    width : float
        Bar width in px.
    caption : str
        Text above the bar (escaped here).

    Returns
    -------
    list of str
        SVG elements.
    """
    pixels = np.ascontiguousarray(rgb_column[::-1, None, :])
    parts = [image(x, y, width, height, pixels)]
    parts.append(rect(x, y, width, height, "none", stroke="#444", stroke_width="0.5"))
    for fraction, label in ticks:
        tick_y = y + height * (1.0 - fraction)
        parts.append(line(x + width, tick_y, x + width + 3, tick_y))
        parts.append(text(x + width + 5, tick_y + 3, label, size=SMALL_FONT_PX))
    if caption:
        parts.append(text(x, y - 5, caption, size=SMALL_FONT_PX))
    return parts
