"""Surface data: GIfTI time series of both hemispheres as one (T, V) array, and back.

fMRIPrep's surface outputs (``--output-spaces fsaverage5 ... fsnative``) are one GIfTI
file per hemisphere, one data array per volume (intent ``TIME_SERIES`` or ``NONE``, both
occur) or, more rarely, one 2-D array of shape (V, T). The analysed vector is the left
hemisphere's vertices followed by the right's; :class:`SurfaceGeometry` is the surface
counterpart of :class:`bids_glm.image.geometry.VolumeGeometry` (same methods), and
:func:`read_surface_series` the counterpart of ``read_masked_series``.

Vertices constant over time or non-finite in some volume (the medial wall of fsaverage
data is all zeros) are marked unusable, like voxels outside a mask. ``--smoothing-fwhm``
smooths each hemisphere along its mesh (the geometry's :class:`MeshFiles`, found before
any fit), among the analysed and usable vertices only (:mod:`bids_glm.image.mesh_smooth`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import nibabel as nib
import numpy as np
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

from bids_glm.errors import InputError
from bids_glm.image.mesh import MeshFiles
from bids_glm.image.surface_smoothing import surface_smoother
from bids_glm.image.usable import (
    exclusion_record,
    finite_and_varying,
    log_unusable,
    usable_columns,
)
from bids_glm.runtime.threads import thread_budget

HEMISPHERES = ("L", "R")
GIFTI_EXTENSION = ".func.gii"
# AnatomicalStructurePrimary of each hemisphere (GIfTI / Connectome Workbench convention)
ANATOMICAL_STRUCTURE = {"L": "CortexLeft", "R": "CortexRight"}
TIME_STEP_KEY = "TimeStep"  # FreeSurfer's per-array meta: milliseconds


@dataclass(frozen=True, eq=False)
class SurfaceGeometry:
    """Vertices of both hemispheres analysed as one vector (left, then right).

    Attributes
    ----------
    n_vertices : tuple of int
        Vertices of the left and right hemisphere meshes.
    mask : ndarray of bool, shape (sum(n_vertices),)
        The analysed vertices; a vector's values fill them in order.
    meshes : MeshFiles or None
        Both hemispheres' meshes, when found: ``--smoothing-fwhm`` smooths along them,
        and the cluster tables follow their edges.
    """

    n_vertices: tuple[int, int]
    mask: np.ndarray
    meshes: MeshFiles | None = None

    extension = GIFTI_EXTENSION
    locations = "vertices"  # what the analysed values are, for messages

    @classmethod
    def whole_surface(
        cls, n_vertices: tuple[int, int], meshes: MeshFiles | None = None
    ) -> SurfaceGeometry:
        """Every vertex of both hemispheres (``meshes``: to smooth along, if any)."""
        counts = tuple(int(n) for n in n_vertices)
        return cls(counts, np.ones(sum(n_vertices), dtype=bool), meshes)

    @property
    def n_values(self) -> int:
        """Length of the vectors this geometry holds (analysed vertices)."""
        return int(np.count_nonzero(self.mask))

    def to_surface(self, values: np.ndarray, dtype=np.float32, fill=0.0) -> np.ndarray:
        """All vertices (left then right): ``values`` where analysed, ``fill`` elsewhere."""
        full = np.full(self.mask.shape, fill, dtype=dtype)
        full[self.mask] = values
        return full

    def from_surface(self, full: np.ndarray) -> np.ndarray:
        """The analysed vertices' values of an all-vertex vector."""
        return np.asarray(full)[..., self.mask]

    def restricted(self, keep: np.ndarray) -> SurfaceGeometry:
        """The same surfaces with only the analysed vertices where ``keep`` is True."""
        mask = self.mask.copy()
        mask[self.mask] = keep
        return SurfaceGeometry(self.n_vertices, mask, self.meshes)

    def hemisphere_values(self, full: np.ndarray) -> dict[str, np.ndarray]:
        """An all-vertex vector split into ``{"L": ..., "R": ...}``."""
        n_left = self.n_vertices[0]
        return {"L": full[:n_left], "R": full[n_left:]}

    def cortex_values(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Each hemisphere's ``values`` over its whole mesh, float64 (0 where not analysed)."""
        return self.hemisphere_values(self.to_surface(values, np.float64))

    def file_entities(self) -> list[dict[str, str]]:
        """Entities each file of a map adds to its name: the hemisphere."""
        return [{"hemi": hemi} for hemi in HEMISPHERES]

    def encode_files(
        self, values: np.ndarray, label: str = ""
    ) -> list[tuple[dict[str, str], bytes]]:
        """One GIfTI file per hemisphere: ``[({"hemi": "L"}, bytes), ({"hemi": "R"}, ...)]``.

        ``label`` (e.g. ``z``) is not written: a GIfTI data array has no name field.

        Vertices not analysed hold 0 (as do unusable ones, which the writers zero).
        """
        full = self.to_surface(values)
        return [
            ({"hemi": hemi}, gifti_bytes(part, hemi))
            for hemi, part in self.hemisphere_values(full).items()
        ]

    def encode_series_files(
        self, values: np.ndarray, labels: Sequence[str] = ()
    ) -> list[tuple[dict[str, str], bytes]]:
        """A series of maps (``values``: (n_maps, V)): one multi-array GIfTI per hemisphere.

        Each hemisphere's file holds one data array per map, in order (intent ``ESTIMATE``),
        each array's meta ``Name`` the map's label (e.g. ``trial-003_onset-12.5``).
        """
        full = np.stack([self.to_surface(row) for row in values])
        n_left = self.n_vertices[0]
        names = list(labels) or [f"map-{i + 1:03d}" for i in range(len(values))]
        return [
            ({"hemi": hemi}, gifti_series_bytes(part, hemi, names))
            for hemi, part in (("L", full[:, :n_left]), ("R", full[:, n_left:]))
        ]

    def location_name(self, index: int) -> str:
        """Where value ``index`` of an all-vertex vector lies (for figure titles)."""
        n_left = self.n_vertices[0]
        if index < n_left:
            return f"vertex {index} of the left hemisphere"
        return f"vertex {index - n_left} of the right hemisphere"

    def exclusion_record(self, valid: np.ndarray) -> dict[str, object]:
        """Sidecar fields on the vertices a map leaves out (written as 0): how many, of all."""
        return exclusion_record(self.mask, valid, "Vertices")

    def encode_mask_files(self) -> list[tuple[dict[str, str], bytes]]:
        """The analysed vertices per hemisphere (1 analysed, 0 not), as GIfTI files."""
        full = self.mask.astype(np.int32)
        return [
            ({"hemi": hemi}, gifti_bytes(part, hemi, intent="NIFTI_INTENT_NONE"))
            for hemi, part in self.hemisphere_values(full).items()
        ]

    def read_series(self, paths, smoothing_fwhm_mm: float = 0.0, keep_volumes=None):
        """The run's (T, V) series of the analysed vertices (see :func:`read_surface_series`).

        With ``smoothing_fwhm_mm > 0``, each hemisphere is smoothed along its mesh.
        """
        return read_surface_series(paths, self, smoothing_fwhm_mm, keep_volumes)


def gifti_bytes(values: np.ndarray, hemi: str, intent: str = "NIFTI_INTENT_ESTIMATE") -> bytes:
    """A one-array GIfTI ``.func.gii`` of ``values`` for hemisphere ``hemi``."""
    meta = GiftiMetaData({"AnatomicalStructurePrimary": ANATOMICAL_STRUCTURE[hemi]})
    dtype = "NIFTI_TYPE_INT32" if values.dtype.kind in "iu" else "NIFTI_TYPE_FLOAT32"
    array = GiftiDataArray(
        np.ascontiguousarray(values, dtype=np.int32 if dtype.endswith("INT32") else np.float32),
        intent=intent,
        datatype=dtype,
        encoding="GIFTI_ENCODING_B64GZ",
    )
    return GiftiImage(meta=meta, darrays=[array]).to_bytes()


def gifti_series_bytes(rows: np.ndarray, hemi: str, names: Sequence[str]) -> bytes:
    """A ``.func.gii`` of hemisphere ``hemi`` with one float32 data array per row of ``rows``.

    Each array's meta ``Name`` is its entry of ``names`` (one per row).
    """
    meta = GiftiMetaData({"AnatomicalStructurePrimary": ANATOMICAL_STRUCTURE[hemi]})
    arrays = [
        GiftiDataArray(
            np.ascontiguousarray(row, dtype=np.float32),
            intent="NIFTI_INTENT_ESTIMATE",
            datatype="NIFTI_TYPE_FLOAT32",
            encoding="GIFTI_ENCODING_B64GZ",
            meta=GiftiMetaData({"Name": str(name)}),
        )
        for row, name in zip(rows, names, strict=True)
    ]
    return GiftiImage(meta=meta, darrays=arrays).to_bytes()


@dataclass(frozen=True)
class SurfaceSeries:
    """The analysed vertices' time series of one run (as ``MaskedSeries`` for volumes).

    ``mean_volume`` is None: surfaces have no underlay volume.
    """

    data: np.ndarray
    usable: np.ndarray
    mean_volume: None = None


def load_gifti_series(path: Path) -> np.ndarray:
    """A GIfTI time series as a float32 (T, V) array (one array per volume, or one (V, T))."""
    arrays = _gifti_arrays(path)
    if isinstance(arrays, np.ndarray):
        return np.ascontiguousarray(arrays, dtype=np.float32)
    return np.stack(arrays).astype(np.float32, copy=False)


def _gifti_arrays(path: Path) -> list[np.ndarray] | np.ndarray:
    """A GIfTI time series' data as decoded: its volumes' 1-D arrays, or a (T, V) view.

    Raises
    ------
    InputError
        Not a readable GIfTI file, no data arrays, or arrays that are not one per volume
        of equal length (nor one 2-D array).
    """
    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises many kinds for a bad file
        raise InputError(f"{path}: not a readable GIfTI file ({err})") from None
    if not isinstance(image, GiftiImage) or not image.darrays:
        raise InputError(f"{path}: expected a GIfTI time series (.func.gii) with data arrays")
    arrays = [np.asarray(d.data) for d in image.darrays]
    if len(arrays) == 1 and arrays[0].ndim == 2:
        return arrays[0].T
    if any(a.ndim != 1 for a in arrays) or len({a.shape for a in arrays}) != 1:
        shapes = sorted({a.shape for a in arrays})
        raise InputError(
            f"{path}: expected one 1-D data array per volume of equal length, found {shapes}"
        )
    return arrays


@dataclass(frozen=True)
class GiftiHeader:
    """What discovery needs of a GIfTI time series, read without decoding its data."""

    n_volumes: int
    n_vertices: int
    time_step_s: float | None


def gifti_header(path: Path) -> GiftiHeader:
    """Volumes, vertices and the FreeSurfer time step of a ``.func.gii``, from its XML only.

    The data arrays' dimensions are attributes of their ``DataArray`` elements, so the
    (often compressed) data are not decoded: discovery reads every run's files this way,
    and each file's data once, when the run is fitted (:func:`load_gifti_series`).
    """
    shapes, time_step_ms = [], None
    name = None
    try:
        for _, element in ElementTree.iterparse(str(path), events=("end",)):
            if element.tag == "DataArray":
                rank = int(element.get("Dimensionality", "1"))
                shapes.append(tuple(int(element.get(f"Dim{k}", "0")) for k in range(rank)))
                element.clear()  # drop the encoded data as we go
            elif element.tag == "Name":
                name = (element.text or "").strip()
            elif element.tag == "Value" and name == TIME_STEP_KEY and time_step_ms is None:
                time_step_ms = (element.text or "").strip()
    except (OSError, ElementTree.ParseError, ValueError) as err:
        raise InputError(f"{path}: not a readable GIfTI file ({err})") from None
    if len(shapes) == 1 and len(shapes[0]) == 2:
        n_vertices, n_volumes = shapes[0]
    elif shapes and all(len(s) == 1 for s in shapes) and len(set(shapes)) == 1:
        n_volumes, n_vertices = len(shapes), shapes[0][0]
    else:
        raise InputError(
            f"{path}: expected a GIfTI time series (one 1-D data array per volume of equal "
            f"length, or one vertices x volumes array), found {sorted(set(shapes))}"
        )
    return GiftiHeader(n_volumes, n_vertices, _seconds(time_step_ms))


def _seconds(time_step_ms: str | None) -> float | None:
    """FreeSurfer's ``TimeStep`` (milliseconds) in seconds; None when absent or unusable."""
    try:
        step_ms = float(time_step_ms) if time_step_ms is not None else 0.0
    except ValueError:
        return None
    return step_ms / 1000.0 if step_ms > 0 else None


def read_surface_series(
    paths,
    geometry: SurfaceGeometry,
    smoothing_fwhm_mm: float = 0.0,
    keep_volumes: np.ndarray | None = None,
) -> SurfaceSeries:
    """Both hemispheres' series of one run as (T_kept, V) float32, V the analysed vertices.

    Parameters
    ----------
    paths : sequence of Path
        The left and the right hemisphere's ``.func.gii``.
    geometry : SurfaceGeometry
        Vertex counts (checked against the files) and analysed vertices.
    smoothing_fwhm_mm : float
        FWHM of the smoothing along each hemisphere's mesh (``geometry.meshes``), among
        its analysed vertices that are finite and not constant; 0 for none.
    keep_volumes : ndarray of bool, shape (n_volumes,), optional
        Volumes to keep.
    """
    if smoothing_fwhm_mm > 0 and geometry.meshes is None:
        raise InputError(
            f"{paths[0]}: --smoothing-fwhm {smoothing_fwhm_mm} needs the hemispheres' meshes "
            "(see --surface-mesh-dir)"
        )
    smoothing = smoothing_fwhm_mm > 0
    # smoothing takes every vertex of the kept volumes; the analysed ones are taken after it
    taken = np.ones_like(geometry.mask) if smoothing else geometry.mask
    data, rows, n_first, start = None, None, None, 0
    hemisphere_taken = np.split(taken, [geometry.n_vertices[0]])
    for path, hemi, expected, take in zip(
        paths, HEMISPHERES, geometry.n_vertices, hemisphere_taken, strict=True
    ):
        arrays = _gifti_arrays(Path(path))
        n_volumes, n_vertices = len(arrays), len(arrays[0])  # a list or a (T, V) view
        if n_vertices != expected:
            raise InputError(
                f"{path}: {n_vertices} vertices in hemisphere {hemi}, expected "
                f"{expected} (as in the unit's first run)"
            )
        if data is None:
            rows, n_first = _kept_rows(paths[0], n_volumes, keep_volumes), n_volumes
            data = np.empty((rows.size, int(np.count_nonzero(taken))), dtype=np.float32)
        elif n_volumes != n_first:
            raise InputError(f"{path}: {n_volumes} volumes, but {paths[0]} has {n_first}")
        stop = start + int(np.count_nonzero(take))
        _fill(data[:, start:stop], arrays, rows, take)
        start = stop
        del arrays  # before the next hemisphere is decoded
    if smoothing:
        data = np.ascontiguousarray(_smoothed(data, geometry, smoothing_fwhm_mm)[:, geometry.mask])
    usable = usable_columns(data)
    log_unusable(paths[0], usable, "vertices")
    return SurfaceSeries(data=data, usable=usable)


def _kept_rows(path, n_volumes: int, keep_volumes: np.ndarray | None) -> np.ndarray:
    """Indices of the kept volumes of a run of ``n_volumes``."""
    if keep_volumes is None:
        return np.arange(n_volumes)
    if keep_volumes.shape != (n_volumes,):
        raise InputError(
            f"{path}: {n_volumes} volumes, but the model describes {keep_volumes.shape[0]}"
        )
    return np.flatnonzero(keep_volumes)


def _fill(
    out: np.ndarray, arrays: list[np.ndarray] | np.ndarray, rows: np.ndarray, take: np.ndarray
) -> None:
    """``out`` (kept volumes x taken vertices) from one hemisphere's decoded data, volume by
    volume (no copy of the hemisphere's series)."""
    for index, row in enumerate(rows):
        out[index] = arrays[row][take]


def _smoothed(data: np.ndarray, geometry: SurfaceGeometry, fwhm_mm: float) -> np.ndarray:
    """Both hemispheres' (T, V) float32 data smoothed in place along their meshes.

    Only included vertices take part: analysed (``geometry.mask``), finite and not
    constant over the kept volumes; the others keep their values and stay unusable.
    """
    finite, varying = finite_and_varying(data)
    included = geometry.mask & finite & varying
    meshes = geometry.meshes.paths
    surface_smoother(meshes, geometry.n_vertices, fwhm_mm, included, thread_budget())(data)
    return data
