"""Report figures: decoded pixels, geometry, escaping and XML validity of every SVG."""

from __future__ import annotations

import base64
import io
import time
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bids_glm.report import brain_figures, figures, svg

SVG_NS = "{http://www.w3.org/2000/svg}"
EVIL = "<img src=x onerror=alert(1)>"
YELLOW, CYAN = (255, 255, 0), (0, 255, 255)
RED_END, BLUE_END = (178, 24, 43), (33, 102, 172)


def parse(document: str) -> ET.Element:
    """Parse an SVG figure and check what every figure must have."""
    assert document.startswith("<svg")
    root = ET.fromstring(document)
    assert root.tag == f"{SVG_NS}svg"
    width, height = float(root.get("width")), float(root.get("height"))
    assert width > 0 and height > 0
    assert root.get("viewBox") == f"0 0 {root.get('width')} {root.get('height')}"
    assert "sans-serif" in root.get("font-family")
    for element in root.iter(f"{SVG_NS}text"):
        assert float(element.get("font-size")) >= 9
    assert "http://" not in document.replace('xmlns="http://www.w3.org/2000/svg"', "")
    return root


def images(root: ET.Element) -> list[tuple[ET.Element, np.ndarray]]:
    """Every embedded PNG, decoded with PIL, with its <image> element."""
    decoded = []
    for element in root.iter(f"{SVG_NS}image"):
        prefix, payload = element.get("href").split(",", 1)
        assert prefix == "data:image/png;base64"
        with Image.open(io.BytesIO(base64.b64decode(payload))) as picture:
            decoded.append((element, np.asarray(picture)))
    return decoded


def texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG_NS}text")]


def is_gray(pixel: np.ndarray) -> bool:
    return int(pixel[0]) == int(pixel[1]) == int(pixel[2])


# --- building blocks ---------------------------------------------------------------------


@pytest.mark.parametrize("channels", [3, 4])
def test_png_round_trip(channels):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(7, 13, channels), dtype=np.uint8)
    with Image.open(io.BytesIO(svg.encode_png(pixels))) as picture:
        assert picture.mode == ("RGB" if channels == 3 else "RGBA")
        np.testing.assert_array_equal(np.asarray(picture), pixels)


def test_png_rejects_wrong_input():
    with pytest.raises(ValueError, match="uint8"):
        svg.encode_png(np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="empty"):
        svg.encode_png(np.zeros((0, 3, 3), dtype=np.uint8))


def test_colormaps():
    np.testing.assert_array_equal(
        svg.colormap(np.array([0.0, 0.5, 1.0]), svg.GRAY)[:, 0], [0, 128, 255]
    )
    diverging = svg.colormap(np.array([0.0, 0.5, 1.0, np.nan]), svg.RED_BLUE)
    assert [tuple(row) for row in diverging] == [BLUE_END, (247, 247, 247), RED_END, svg.NAN_RGB]
    rgba = svg.cold_hot(np.array([-5.0, -3.0, -2.9, 0.0, np.nan, 2.9, 3.0, 5.0]), 3.0, 5.0)
    assert rgba[:, 3].tolist() == [255, 255, 0, 0, 0, 0, 255, 255]
    assert tuple(rgba[0, :3]) == CYAN and tuple(rgba[-1, :3]) == YELLOW
    assert rgba[1, 2] > rgba[1, 0] and rgba[6, 0] > rgba[6, 2]  # blue side, red side at threshold


def test_escaping_helpers():
    assert svg.esc(EVIL) == "&lt;img src=x onerror=alert(1)&gt;"
    assert ET.fromstring(f"<a b={svg.attr(chr(34) + EVIL + chr(39))}/>").get("b") == f"\"{EVIL}'"


def test_nice_ticks_and_gapped_path():
    np.testing.assert_allclose(svg.nice_ticks(0, 119), [0, 25, 50, 75, 100])
    np.testing.assert_allclose(svg.nice_ticks(0, 1.0, 5), [0, 0.25, 0.5, 0.75, 1.0])
    finite = np.array([False, True, True, False, True, False, True, True, True])
    path = svg.path_with_gaps(np.arange(9.0), np.zeros(9), finite)
    assert path.count("M") == 3 and path.count("L") == 3 and path.count("h0.01") == 1


# --- design figures ------------------------------------------------------------------------


def make_design(n_scans: int = 40) -> pd.DataFrame:
    ramp = np.linspace(-2.0, 2.0, n_scans)
    return pd.DataFrame(
        {"ramp": ramp, "copy": ramp * 3.0, "flip": -ramp, "zeros": 0.0, "constant": 3.0}
    )


def test_design_matrix_gray_levels_and_censoring():
    design = make_design()
    root = parse(figures.design_matrix_svg(design, censored=[3, 17]))
    ((element, pixels),) = images(root)
    rows_per_scan = pixels.shape[0] // len(design)
    columns_px = pixels.shape[1] // design.shape[1]
    assert pixels.shape[0] == rows_per_scan * len(design) and columns_px >= 8
    centres = pixels[rows_per_scan // 2 :: rows_per_scan, columns_px // 2 :: columns_px, 0]
    expected_ramp = np.rint((np.linspace(-1, 1, len(design)) + 1) / 2 * 255)
    np.testing.assert_allclose(centres[:, 0], expected_ramp, atol=1)
    np.testing.assert_allclose(centres[:, 1], expected_ramp, atol=1)  # scaled by max |value|
    np.testing.assert_allclose(centres[:, 2], 255 - expected_ramp, atol=1)
    assert (centres[:, 3] == 128).all() and (centres[:, 4] == 255).all()
    marks = [rect for rect in root.iter(f"{SVG_NS}rect") if rect.get("class") == "censored"]
    top, scan_px = float(element.get("y")), float(element.get("height")) / len(design)
    assert [round((float(r.get("y")) - top) / scan_px) for r in marks] == [3, 17]
    assert set(design.columns) <= set(texts(root))


def test_design_matrix_escapes_names_and_rejects_bad_input():
    design = pd.DataFrame({EVIL: [1.0, 0.0, 1.0], 'say "hi"': [0.0, 1.0, 0.0]})
    document = figures.design_matrix_svg(design)
    assert EVIL not in document and "&lt;img src=x onerror=alert(1)&gt;" in document
    assert EVIL in texts(parse(document))
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        figures.design_matrix_svg(design, censored=[3])
    with pytest.raises(ValueError, match="empty"):
        figures.design_matrix_svg(pd.DataFrame())


def test_design_correlation_colours():
    design = make_design()
    rng = np.random.default_rng(1)
    design["noise"] = rng.normal(size=len(design))
    correlation = figures.column_correlation(design.to_numpy())
    finite = ["ramp", "copy", "flip", "noise"]
    index = [design.columns.get_loc(name) for name in finite]
    np.testing.assert_allclose(
        correlation[np.ix_(index, index)], np.corrcoef(design[finite].to_numpy().T), atol=1e-12
    )
    assert np.isnan(correlation[3]).all() and np.isnan(correlation[:, 4]).all()

    root = parse(figures.design_correlation_svg(design))
    (_, matrix), (_, _bar) = images(root)
    cell = matrix.shape[0] // design.shape[1]
    centres = matrix[cell // 2 :: cell, cell // 2 :: cell]
    assert tuple(centres[0, 1]) == RED_END  # identical up to scale: +1
    assert tuple(centres[0, 2]) == BLUE_END  # sign flipped: -1
    assert tuple(centres[3, 0]) == svg.NAN_RGB and tuple(centres[4, 4]) == svg.NAN_RGB
    expected = svg.colormap((correlation[0, 5] + 1) / 2, svg.RED_BLUE)
    np.testing.assert_array_equal(centres[0, 5], expected)
    assert "n/a: constant column" in texts(root)


def test_event_timeline_geometry():
    events = pd.DataFrame(
        {
            "onset": [10.0, 40.0, 25.0, 70.0, 300.0],
            "duration": [5.0, 5.0, 0.0, 2.0, 1.0],
            "trial_type": ["b", "b", EVIL, "a", "a"],
            "response_time": [1.0, np.nan, 2.0, 0.5, 0.4],
        }
    )
    document = figures.event_timeline_svg(events, scan_duration_s=200.0)
    root = parse(document)
    assert EVIL not in document
    labels = texts(root)
    assert labels[:3] == sorted(["a", "b", EVIL])  # one row per condition, sorted
    bars = [r for r in root.iter(f"{SVG_NS}rect") if r.get("fill") != "#fafafa"]
    assert len(bars) == 3  # the event after the scan's end is left out
    by_x = sorted(bars, key=lambda r: float(r.get("x")))
    first, second = by_x[0], by_x[1]
    px_per_s = float(first.get("width")) / 5.0
    assert float(second.get("x")) - float(first.get("x")) == pytest.approx(30 * px_per_s, abs=0.02)
    zero_duration = [el for el in root.iter(f"{SVG_NS}line") if el.get("stroke-width") == "1.5"]
    assert len(zero_duration) == 1
    assert float(zero_duration[0].get("x1")) - float(first.get("x")) == pytest.approx(
        15 * px_per_s, abs=0.02
    )
    with pytest.raises(ValueError, match="onset"):
        figures.event_timeline_svg(events.drop(columns="onset"), 200.0)


def test_event_timeline_without_trial_type():
    events = pd.DataFrame({"onset": [1.0, 5.0], "duration": [1.0, 1.0]})
    assert "events" in texts(parse(figures.event_timeline_svg(events, 20.0)))


def test_motion_trace_gaps_censoring_threshold():
    fd_mm = np.array([np.nan, 0.1, 0.2, 0.9, 0.1, np.nan, 0.2, 0.3, 0.1, 0.1])
    root = parse(figures.motion_trace_svg(fd_mm, 2.0, censored=[3, 4], threshold_mm=0.5))
    (trace,) = root.iter(f"{SVG_NS}path")
    path = trace.get("d")
    assert path.count("M") == 2 and path.count("L") == 6
    points = [tuple(map(float, p.split())) for p in path.replace("M", "L").split("L")[1:]]
    y_of = {index: y for index, (_, y) in zip([1, 2, 3, 4, 6, 7, 8, 9], points, strict=True)}
    assert y_of[3] < y_of[2] < y_of[1]  # larger FD is higher on screen
    (dashed,) = [el for el in root.iter(f"{SVG_NS}line") if el.get("stroke-dasharray")]
    fd_per_px = (0.9 - 0.1) / (y_of[1] - y_of[3])
    assert (y_of[1] - float(dashed.get("y1"))) * fd_per_px == pytest.approx(0.4, abs=1e-3)
    bands = [r for r in root.iter(f"{SVG_NS}rect") if r.get("class") == "censored"]
    centres = [float(b.get("x")) + float(b.get("width")) / 2 for b in bands]
    x_of = {index: x for index, (x, _) in zip([1, 2, 3, 4, 6, 7, 8, 9], points, strict=True)}
    np.testing.assert_allclose(centres, [x_of[3], x_of[4]], atol=0.05)
    assert "threshold 0.5 mm" in texts(root) and "FD (mm)" in texts(root)


def test_motion_trace_all_missing():
    root = parse(figures.motion_trace_svg(np.full(5, np.nan), 1.0))
    assert "no framewise displacement available" in texts(root)


def test_contrast_vectors():
    columns = ["face", "house", EVIL, "constant"]
    contrasts = {
        "faceMinusHouse": {"face": 1.0, "house": -1.0},
        "effects": [{"face": 1.0}, {"house": 1.0}, {EVIL: 0.5}],
        "faceOnly": [{"face": 2.0}],
    }
    document = figures.contrast_vectors_svg(contrasts, columns)
    assert EVIL not in document
    root = parse(document)
    cells = [r for r in root.iter(f"{SVG_NS}rect") if r.get("stroke") == "#ccc"]
    assert len(cells) == 5 * 4  # one t row and four F rows over four columns
    colours = [cell.get("fill") for cell in cells]
    assert colours[0] == svg.hex_colour(RED_END) and colours[1] == svg.hex_colour(BLUE_END)
    assert colours[3] == colours[4 + 1] == svg.hex_colour((247, 247, 247))
    labels = texts(root)
    assert {"faceMinusHouse", "effects (F)", "faceOnly (F)", "1", "-1", "0.5", "2", EVIL} <= set(
        labels
    )
    with pytest.raises(ValueError, match="not in the design: motion, vowel"):
        figures.contrast_vectors_svg({"bad": {"face": 1, "vowel": 1, "motion": 2}}, columns)


# --- brain figures -------------------------------------------------------------------------

SHAPE = (20, 24, 16)
AFFINE = np.array([[2.0, 0, 0, -20], [0, 2.0, 0, -30], [0, 0, 3.0, -20], [0, 0, 0, 1]])
BLOB, NEGATIVE, WEAK = (5, 15, 10), (14, 18, 10), (14, 5, 10)


def planted_stat() -> np.ndarray:
    stat = np.zeros(SHAPE)
    stat[4:7, 14:17, 9:12] = 5.0
    stat[BLOB] = 8.0
    stat[NEGATIVE] = -6.0
    stat[WEAK] = 2.0  # below the threshold of 3
    stat[0, 0, 0] = np.nan
    return stat


def underlay_volume() -> np.ndarray:
    rng = np.random.default_rng(2)
    return 100.0 + rng.normal(scale=10.0, size=SHAPE)


def panel_pixel(pixels: np.ndarray, across: int, up: int, n_across: int, n_up: int) -> np.ndarray:
    """The pixel at the centre of voxel (across, up) of a panel drawn with up at the top."""
    row_factor, column_factor = pixels.shape[0] // n_up, pixels.shape[1] // n_across
    row = (n_up - 1 - up) * row_factor + row_factor // 2
    return pixels[row, across * column_factor + column_factor // 2]


def axial_pixel(pixels: np.ndarray, x: int, y: int) -> np.ndarray:
    return panel_pixel(pixels, x, y, SHAPE[0], SHAPE[1])


def test_stat_slices_colour_the_blob_only():
    root = parse(brain_figures.stat_slices_svg(planted_stat(), underlay_volume(), AFFINE, 3.0))
    panels = images(root)
    assert len(panels) == 4  # three slices and the colour bar
    (_, sagittal), (_, coronal), (_, axial) = panels[:3]
    assert tuple(axial_pixel(axial, *BLOB[:2])) == YELLOW  # the default cut is the peak
    assert tuple(axial_pixel(axial, *NEGATIVE[:2])) != YELLOW
    negative = axial_pixel(axial, *NEGATIVE[:2])
    assert negative[2] > 150 and negative[0] < 50
    assert is_gray(axial_pixel(axial, *WEAK[:2]))
    coloured = ~((axial[..., 0] == axial[..., 1]) & (axial[..., 1] == axial[..., 2]))
    n_voxels = coloured.sum() / ((axial.shape[0] // SHAPE[1]) * (axial.shape[1] // SHAPE[0]))
    assert n_voxels == 9 + 1  # the 3x3 cross-section of the blob and the negative voxel
    x_mm, y_mm, z_mm = (AFFINE @ np.array([*BLOB, 1.0]))[:3]
    assert {f"x = {x_mm:g} mm", f"y = {y_mm:g} mm", f"z = {z_mm:g} mm"} <= set(texts(root))
    assert {"L", "R", "+3.00", "-3.00"} <= set(texts(root))
    x, y, z = BLOB
    assert tuple(panel_pixel(sagittal, y, z, SHAPE[1], SHAPE[2])) == YELLOW
    assert tuple(panel_pixel(coronal, x, z, SHAPE[0], SHAPE[2])) == YELLOW
    assert is_gray(panel_pixel(sagittal, y, z - 2, SHAPE[1], SHAPE[2]))  # outside the blob


def test_stat_slices_follow_the_affine_not_the_voxel_order():
    stat, underlay = planted_stat(), underlay_volume()
    flipped_affine = AFFINE.copy()
    flipped_affine[0, 0], flipped_affine[0, 3] = -2.0, AFFINE[0, 3] + 2.0 * (SHAPE[0] - 1)
    reference = images(ET.fromstring(brain_figures.stat_slices_svg(stat, underlay, AFFINE, 3.0)))
    permuted_affine = flipped_affine[:, [2, 0, 1, 3]]  # voxel axes stored as (z, x, y)
    permuted = np.transpose(stat[::-1], (2, 0, 1))
    document = brain_figures.stat_slices_svg(
        permuted, np.transpose(underlay[::-1], (2, 0, 1)), permuted_affine, 3.0
    )
    for (_, expected), (_, actual) in zip(reference, images(ET.fromstring(document)), strict=True):
        np.testing.assert_array_equal(actual, expected)


def test_stat_slices_cut_and_dark_background():
    cut_voxel = np.array([14, 18, 10])
    cut_mm = tuple((AFFINE @ np.append(cut_voxel, 1.0))[:3] + 0.4)
    title = EVIL + " \"quoted\" 'too'"
    document = brain_figures.stat_slices_svg(planted_stat(), None, AFFINE, 3.0, cut_mm, title)
    assert EVIL not in document
    root = parse(document)
    assert title in texts(root) and root.get("aria-label") == title
    (_, _sagittal), (_, _coronal), (_, axial) = images(root)[:3]
    assert tuple(axial_pixel(axial, 0, 0)) == (48, 48, 48)
    assert axial_pixel(axial, *NEGATIVE[:2])[2] > 150
    assert f"x = {cut_mm[0] - 0.4:g} mm" in texts(root)


def test_anisotropic_voxels_keep_their_aspect():
    stat = np.zeros((10, 12, 8))
    stat[5, 6, 4] = 5.0
    affine = np.diag([1.0, 1.5, 4.0, 1.0])
    for document in (
        brain_figures.stat_slices_svg(stat, None, affine, 3.0),
        brain_figures.glass_brain_svg(stat, affine, 3.0),
    ):
        sagittal, coronal, axial = images(parse(document))[:3]
        for (element, pixels), (width_mm, height_mm) in zip(
            (sagittal, coronal, axial), ((18.0, 32.0), (10.0, 32.0), (10.0, 18.0)), strict=True
        ):
            width, height = float(element.get("width")), float(element.get("height"))
            assert height / width == pytest.approx(height_mm / width_mm, rel=1e-3)
            assert pixels.shape[0] / pixels.shape[1] == pytest.approx(
                height_mm / width_mm, rel=0.1
            )
            assert 100 <= max(width, height) <= 250


def test_glass_brain_projection_keeps_the_extreme_sign():
    stat = np.zeros(SHAPE)
    stat[10, 10, 2] = 4.0
    stat[10, 10, 12] = -6.0
    stat[3, 20, 5] = 2.5  # below threshold
    stat[3, 20, 14] = np.nan
    mask = np.zeros(SHAPE, dtype=bool)
    mask[2:18, 2:22, 1:15] = True
    root = parse(brain_figures.glass_brain_svg(stat, AFFINE, 3.0, brain_mask=mask, title="z"))
    (_, sagittal), _, (_, axial) = images(root)[:3]
    strongest = axial_pixel(axial, 10, 10)
    assert strongest[2] > 150 and strongest[0] < 50  # -6 wins over +4 along z
    assert tuple(axial_pixel(axial, 3, 20)) == (238, 238, 238)  # glass, not coloured
    row_factor, column_factor = sagittal.shape[0] // SHAPE[2], sagittal.shape[1] // SHAPE[1]

    def sagittal_pixel(y: int, z: int) -> np.ndarray:
        return sagittal[(SHAPE[2] - 1 - z) * row_factor + 1, y * column_factor + 1]

    assert sagittal_pixel(10, 2)[0] > 200 and sagittal_pixel(10, 2)[2] == 0  # positive
    assert sagittal_pixel(10, 12)[2] == 255  # negative
    assert (axial == 120).all(axis=2).any()  # the mask's projected outline
    assert tuple(axial[0, 0]) == (255, 255, 255)  # outside the glass


def test_mask_outline():
    grid = np.indices(SHAPE)
    mask = ((grid[0] - 10) ** 2 + (grid[1] - 12) ** 2 + 4 * (grid[2] - 8) ** 2) <= 49
    root = parse(brain_figures.mask_outline_svg(underlay_volume(), mask, AFFINE, n_slices=5))
    panels = images(root)
    assert len(panels) == 5
    z_labels = [label for label in texts(root) if label.startswith("z = ")]
    occupied = np.flatnonzero(mask.any(axis=(0, 1)))
    z_mm = AFFINE[2, 2] * np.rint(np.linspace(occupied[0], occupied[-1], 7)[1:-1]) + AFFINE[2, 3]
    assert z_labels == [f"z = {value:g} mm" for value in z_mm]
    _, middle = panels[2]
    red = (middle == (255, 48, 48)).all(axis=2)
    assert red.any() and not red[middle.shape[0] // 2, middle.shape[1] // 2]
    assert red[middle.shape[0] // 2].sum() == 2  # one edge pixel each side on the centre row
    with pytest.raises(ValueError, match="empty"):
        brain_figures.mask_outline_svg(underlay_volume(), np.zeros(SHAPE), AFFINE)
    with pytest.raises(ValueError, match="shape"):
        brain_figures.mask_outline_svg(underlay_volume(), mask[:-1], AFFINE)


def test_time_per_figure_is_printed(capsys):
    """A rough budget on a 2 mm MNI-sized grid (printed, not asserted)."""
    shape = (97, 115, 97)
    affine = np.array([[2.0, 0, 0, -96], [0, 2.0, 0, -132], [0, 0, 2.0, -78], [0, 0, 0, 1]])
    rng = np.random.default_rng(3)
    stat = rng.normal(size=shape).astype(np.float32)
    underlay = rng.uniform(100, 200, size=shape).astype(np.float32)
    design = pd.concat([make_design(300)] * 8, axis=1)
    design.columns = [f"c{i}" for i in range(design.shape[1])]
    calls = {
        "design matrix (300 x 40)": lambda: figures.design_matrix_svg(design, censored=[4]),
        "design correlation (40)": lambda: figures.design_correlation_svg(design),
        "stat slices (MNI 2 mm)": lambda: brain_figures.stat_slices_svg(
            stat, underlay, affine, 3.1
        ),
        "glass brain (MNI 2 mm)": lambda: brain_figures.glass_brain_svg(stat, affine, 3.1),
        "mask outline (MNI 2 mm)": lambda: brain_figures.mask_outline_svg(
            underlay, stat > -9, affine
        ),
    }
    with capsys.disabled():
        for name, call in calls.items():
            start = time.perf_counter()
            parse(call())
            print(f"\n  {name}: {1000 * (time.perf_counter() - start):.1f} ms", end="")
        print()
