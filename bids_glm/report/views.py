"""What the participant and group reports share: options, figures, volumes, contrasts.

:func:`contrast_view` is a contrast's section (thresholded maps and cluster table) in
both reports; the participant's other sections are built in :mod:`bids_glm.report.render`,
the group's in :mod:`bids_glm.report.group_report`. Every view is a plain dict for the
templates. The report computes no statistics itself:
z maps are thresholded with the :class:`ReportOptions` given by
:mod:`bids_glm.glm.thresholding` (never refitted); a subject-level contrast shows the
cluster table the participant level wrote when it used the same threshold, and any other
table is computed by :mod:`bids_glm.glm.clusters`. Figures come from
:mod:`bids_glm.report.figures` and :mod:`bids_glm.report.brain_figures` as SVG embedded
in ``data:`` URIs (an SVG shown through ``<img>`` cannot run scripts). A figure or file
that fails becomes a note.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from string import ascii_lowercase

import nibabel as nib
import numpy as np
import pandas as pd

from bids_glm.glm.clusters import CLUSTER_TABLE_DTYPES, cluster_table
from bids_glm.glm.thresholding import Threshold, check_height_control, threshold_map
from bids_glm.report import collect
from bids_glm.report.brain_figures import display_window, glass_brain_svg, stat_slices_svg

LOGGER = logging.getLogger("bids_glm")
NOT_RECORDED = "not recorded"
MAX_CLUSTERS = 20  # largest-peak clusters tabulated; all of them are in the clusters TSV
_Z_THRESHOLD_TOLERANCE = 1e-6  # relative: the report reads float32 maps, the table used float64


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
        check_height_control(self.height_control, self.alpha)
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

    @cached_property
    def display_window(self) -> tuple[float, float]:
        """The gray window of the image as an underlay (computed once: every contrast's
        slices are drawn over the same underlay)."""
        return display_window(self.data)


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


def figure(draw: Callable[..., str], *args, alt: str = "", kind: str = "half", **kwargs) -> Figure:
    """Call ``draw(*args, **kwargs)`` for an SVG and embed it; a note when it fails.

    A report must never fail for one figure, so any error becomes a logged note.
    ``kind`` (``narrow``, ``half``, ``wide``) is the figure's width class on the page.
    """
    try:
        svg = draw(*args, **kwargs)
    except Exception as error:  # one failed figure must not sink the report
        LOGGER.warning(
            "report: figure %s.%s failed (%s)", draw.__module__, draw.__qualname__, error
        )
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
    return display_rows(
        cluster_table(z_volume, affine, threshold.z_threshold, threshold.cluster_extent)
    )


def display_rows(table: pd.DataFrame) -> list[dict]:
    """A cluster table (columns ``CLUSTER_TABLE_COLUMNS``) as rows of display strings."""
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


def written_cluster_table(
    tsv_path: Path,
    threshold: Threshold,
    dtypes: dict = CLUSTER_TABLE_DTYPES,
    extent_key: str = "ClusterExtentVoxels",
) -> pd.DataFrame | None:
    """The cluster table written at ``tsv_path``, if it was made with ``threshold``.

    Parameters
    ----------
    tsv_path : Path
        A cluster table written by the participant level, with its JSON sidecar.
    threshold : Threshold
        What the report applied to the z map.
    dtypes : dict
        The table's columns, in order, and their types (default: a volume's table).
    extent_key : str
        The sidecar field of the cluster extent (``ClusterExtentVertices`` on meshes).

    Returns
    -------
    pandas.DataFrame or None
        The table, when the sidecar records the same height control, alpha and cluster
        extent and the same z threshold (to float32 precision: the report reads the map
        from its file); None otherwise, or when either file is missing or unreadable.
    """
    sidecar = collect.read_json(tsv_path.with_suffix(".json"))
    z_threshold = sidecar.get("ZThreshold")
    same = (
        sidecar.get("HeightControl") == threshold.height_control
        and sidecar.get("Alpha") == threshold.alpha
        and sidecar.get(extent_key) == threshold.cluster_extent
        and isinstance(z_threshold, int | float)
        and math.isclose(z_threshold, threshold.z_threshold, rel_tol=_Z_THRESHOLD_TOLERANCE)
    )
    if not same:
        return None
    try:
        table = pd.read_csv(
            tsv_path, sep="\t", na_values="n/a", keep_default_na=False, dtype=dtypes
        )
    except (OSError, ValueError) as error:
        LOGGER.warning("report: %s unreadable (%s); clusters recomputed", tsv_path, error)
        return None
    if tuple(table.columns) != tuple(dtypes):
        LOGGER.warning("report: %s has unexpected columns; clusters recomputed", tsv_path)
        return None
    return table


def contrast_rows(
    thresholded: np.ndarray,
    affine: np.ndarray,
    threshold: Threshold,
    clusters_path: Path | None,
) -> list[dict]:
    """A thresholded map's cluster rows: the written table at ``clusters_path`` when it
    was made with ``threshold`` (see :func:`written_cluster_table`), else computed."""
    if clusters_path is not None and np.isfinite(threshold.z_threshold):
        written = written_cluster_table(clusters_path, threshold)
        if written is not None:
            return display_rows(written)
    return cluster_rows(thresholded, affine, threshold)


def contrast_view(
    stat_map: collect.StatMap,
    mask: Volume | None,
    underlay: Volume | None,
    options: ReportOptions,
    heading: str,
    clusters_path: Path | None = None,
) -> dict:
    """Threshold one z map and draw it: slices, glass brain, threshold, cluster table.

    ``clusters_path`` is where the participant level may have written this map's cluster
    table (subject-level maps); it is shown when it was made with the same threshold.
    """
    sidecar = stat_map.sidecar
    view = {
        "heading": heading,
        "name": stat_map.name,
        "anchor": stat_map.anchor,
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
    rows = contrast_rows(thresholded, z_map.affine, threshold, clusters_path)
    cluster_numbers = [int(row["id"].rstrip(ascii_lowercase)) for row in rows]
    view["rows"] = [r for r, n in zip(rows, cluster_numbers, strict=True) if n <= MAX_CLUSTERS]
    view["hidden_clusters"] = max(max(cluster_numbers, default=0) - MAX_CLUSTERS, 0)
    if not view["rows"]:
        view["note"] = "No voxel survives the threshold."
        return view
    peak_mm = [float(view["rows"][0][k]) for k in ("x", "y", "z")]
    view["figures"] = _map_figures(
        stat_map.name, z_map, thresholded, threshold, mask, underlay, peak_mm
    )
    return view


def _map_figures(
    name: str,
    z_map: Volume,
    thresholded: np.ndarray,
    threshold: Threshold,
    mask: Volume | None,
    underlay: Volume | None,
    peak_mm: list[float],
) -> list[Figure]:
    """Orthogonal slices through the peak and the glass brain of a thresholded map."""
    background = underlay if same_grid(underlay, z_map) else None
    underlay_data = None if background is None else background.data
    return [
        figure(
            stat_slices_svg,
            thresholded,
            underlay_data,
            z_map.affine,
            threshold.z_threshold,
            cut_mm=peak_mm,
            title=name,
            window=None if background is None else background.display_window,
            alt=f"{name}: thresholded z, orthogonal slices through the peak",
            kind="wide",
        ),
        figure(
            glass_brain_svg,
            thresholded,
            z_map.affine,
            threshold.z_threshold,
            brain_mask=None if mask is None else mask.data > 0,
            title=name,
            alt=f"{name}: maximum-intensity projections",
            kind="wide",
        ),
    ]


def same_grid(a: Volume | None, b: Volume | None) -> bool:
    """Whether two volumes are both present, of one shape and (to 1e-3 mm) one affine."""
    return (
        a is not None
        and b is not None
        and a.data.shape == b.data.shape
        and np.allclose(a.affine, b.affine, atol=1e-3)
    )
