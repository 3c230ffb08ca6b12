"""CIFTI-2 grayordinates: a dense time series (``.dtseries.nii``) as one (T, V) array, and back.

fMRIPrep's ``--cifti-output`` writes ``..._space-fsLR_den-91k_bold.dtseries.nii``: one
matrix of volumes x grayordinates (both cortices without their medial walls, plus
subcortical voxel structures), described by a ``SeriesAxis`` (the time step and its unit)
and a ``BrainModelAxis`` (which vertex or voxel each column is). :class:`CiftiGeometry` is
the counterpart of :class:`bids_glm.image.geometry.VolumeGeometry` (same methods); maps
are written as ``.dscalar.nii`` with the input's ``BrainModelAxis`` unchanged, a
``ScalarAxis`` named after the map (e.g. ``z``) and the intent ``ConnDenseScalar`` set
explicitly (nibabel would write ``ConnUnknown``).

Grayordinates left out of the analysis (constant or non-finite in some run) hold 0 in the
written maps, as the medial wall does in HCP and Connectome Workbench files: NaN would
propagate through Workbench's smoothing and resampling and its palettes skip 0 anyway.
Which grayordinates were analysed is the unit's ``_mask.dscalar.nii`` (1 analysed, 0 not).

A run's CIFTI XML is parsed once, by discovery
(:func:`bids_glm.image.cifti_header.cifti_header`); the reader takes
the data from the NIfTI-2 header alone and, with ``--smoothing-fwhm``, smooths each cortex
along its mesh and each voxel structure within itself
(:func:`bids_glm.image.cifti_smooth.smooth_grayordinates`, loaded only then) before the fit.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import nibabel as nib
import numpy as np
from nibabel.cifti2 import cifti2_axes
from nibabel.cifti2.parse_cifti2 import Cifti2Extension

from bids_glm.errors import InputError
from bids_glm.image.cifti_columns import CiftiColumns, cifti_columns
from bids_glm.image.cifti_header import CORTEX_STRUCTURES
from bids_glm.image.mesh import MeshFiles, read_mesh
from bids_glm.image.usable import (
    exclusion_record,
    finite_and_varying,
    log_unusable,
    usable_columns,
)
from bids_glm.runtime.threads import thread_budget

DENSE_SCALAR_EXTENSION = ".dscalar.nii"
DENSE_SCALAR_INTENT = "ConnDenseScalar"
READ_GRAYORDINATES = 8192  # columns read and transposed at a time (~10 MB at 300 volumes)
MAP_NAME_SLOT = "BIDSGLMMAPNAMESLOT"  # the map name in the cached XML, replaced per map
_SLOT = MAP_NAME_SLOT.encode()


@dataclass(frozen=True, eq=False)
class CiftiGeometry:
    """Grayordinates of a CIFTI-2 file analysed as one vector.

    Attributes
    ----------
    brain_models : BrainModelAxis
        The input's grayordinates, copied unchanged into every written map.
    mask : ndarray of bool, shape (len(brain_models),)
        The analysed grayordinates; a vector's values fill them in order.
    meshes : MeshFiles or None
        Both cortices' meshes (fsLR 32k), when found: ``--smoothing-fwhm`` smooths along
        them, and the cluster tables follow their edges.
    """

    brain_models: cifti2_axes.BrainModelAxis
    mask: np.ndarray
    _cache: dict = field(default_factory=dict, repr=False, compare=False)
    meshes: MeshFiles | None = None

    extension = DENSE_SCALAR_EXTENSION
    locations = "grayordinates"

    @classmethod
    def whole(
        cls, brain_models: cifti2_axes.BrainModelAxis, meshes: MeshFiles | None = None
    ) -> CiftiGeometry:
        """Every grayordinate of ``brain_models`` (``meshes``: to smooth along, if any)."""
        return cls(brain_models, np.ones(len(brain_models), dtype=bool), meshes=meshes)

    @property
    def n_values(self) -> int:
        """Length of the vectors this geometry holds (analysed grayordinates)."""
        return int(np.count_nonzero(self.mask))

    def to_grayordinates(self, values: np.ndarray, dtype=np.float32) -> np.ndarray:
        """Every grayordinate: ``values`` where analysed, 0 elsewhere."""
        full = np.zeros(self.mask.shape, dtype=dtype)
        full[self.mask] = values
        return full

    def from_grayordinates(self, full: np.ndarray) -> np.ndarray:
        """The analysed grayordinates' values of an all-grayordinate array (last axis)."""
        return np.asarray(full)[..., self.mask]

    def restricted(self, keep: np.ndarray) -> CiftiGeometry:
        """The same grayordinates with only the analysed ones where ``keep`` is True."""
        mask = self.mask.copy()
        mask[self.mask] = keep
        return CiftiGeometry(self.brain_models, mask, self._cache, meshes=self.meshes)

    def cortex_values(self, values: np.ndarray) -> dict[str, np.ndarray]:
        """Each cortex's ``values`` over its whole mesh, float64 (0 where not analysed and
        on the medial wall): ``{"L": ..., "R": ...}`` (the cortices present)."""
        full = self.to_grayordinates(values, np.float64)
        return grayordinate_parts(full, self.brain_models)[0]

    def file_entities(self) -> list[dict[str, str]]:
        """Entities each file of a map adds to its name: one file, none added."""
        return [{}]

    def _xml_template(self) -> bytes:
        if "xml" not in self._cache:  # built once per geometry (a race builds it twice)
            self._cache["xml"] = dscalar_xml_template(self.brain_models)
        return self._cache["xml"]

    def encode_files(self, values: np.ndarray, label: str = "") -> list[tuple[dict, bytes]]:
        """One ``.dscalar.nii`` of ``values``, its scalar axis named ``label`` (e.g. ``z``)."""
        full = self.to_grayordinates(values)
        return [({}, dscalar_bytes(full, self._xml_template(), label))]

    def encode_series_files(
        self, values: np.ndarray, labels: Sequence[str] = ()
    ) -> list[tuple[dict, bytes]]:
        """A series of maps (``values``: (n_maps, V)) as one ``.dscalar.nii``.

        One ``ScalarAxis`` entry per map, named by ``labels`` (e.g. ``trial-003_onset-12.5``),
        the input's ``BrainModelAxis`` unchanged, intent ``ConnDenseScalar``.
        """
        full = np.stack([self.to_grayordinates(row) for row in values])
        names = list(labels) or [f"map-{i + 1:03d}" for i in range(len(values))]
        image = nib.Cifti2Image(full, header=(cifti2_axes.ScalarAxis(names), self.brain_models))
        image.nifti_header.set_intent(DENSE_SCALAR_INTENT)
        return [({}, image.to_bytes())]

    def location_name(self, index: int) -> str:
        """Where value ``index`` of an all-grayordinate vector lies (for figure titles)."""
        models = self.brain_models
        structure = str(models.name[index]).removeprefix("CIFTI_STRUCTURE_")
        if models.volume_mask[index]:
            where = f"voxel {tuple(int(i) for i in models.voxel[index])}"
        else:
            where = f"vertex {int(models.vertex[index])}"
        return f"grayordinate {index} ({structure} {where})"

    def exclusion_record(self, valid: np.ndarray) -> dict[str, object]:
        """Sidecar fields on the grayordinates a map leaves out (written as 0)."""
        return exclusion_record(self.mask, valid, "Grayordinates")

    def encode_mask_files(self) -> list[tuple[dict, bytes]]:
        """The analysed grayordinates (1 analysed, 0 not) as one ``.dscalar.nii``."""
        full = self.mask.astype(np.float32)
        return [({}, dscalar_bytes(full, self._xml_template(), "mask"))]

    def read_series(self, paths, smoothing_fwhm_mm: float = 0.0, keep_volumes=None):
        """The run's (T, V) series of the analysed grayordinates (:func:`read_cifti_series`)."""
        return read_cifti_series(paths[0], self, smoothing_fwhm_mm, keep_volumes)

    def columns(self, path: Path, keep_volumes: np.ndarray | None = None) -> CiftiColumns:
        """A reader of the run's analysed grayordinates, a block at a time (not smoothed)."""
        return cifti_columns(Path(path), len(self.brain_models), self.mask, keep_volumes)


def grayordinate_parts(
    full: np.ndarray, brain_models: cifti2_axes.BrainModelAxis
) -> tuple[dict[str, np.ndarray], list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]]:
    """A vector over all grayordinates split into cortices and voxel structures.

    Returns
    -------
    cortex : dict of str to ndarray
        ``"L"``/``"R"`` -> values over the cortex's whole mesh (0 on the medial wall).
    structures : list of (str, ndarray, ndarray, ndarray)
        Each voxel structure's name (``thalamus_left``), values, voxel indices (n, 3) and
        voxel-to-mm affine.
    """
    cortex, structures = {}, []
    for name, where, model in brain_models.iter_structures():
        part = full[where]
        if name in CORTEX_STRUCTURES:
            whole = np.zeros(model.nvertices[name], dtype=full.dtype)
            whole[model.vertex] = part
            cortex[CORTEX_STRUCTURES[name]] = whole
        elif model.volume_mask.any():
            label = name.removeprefix("CIFTI_STRUCTURE_").lower()
            structures.append((label, part, model.voxel, model.affine))
    return cortex, structures


def dscalar_xml_template(brain_models: cifti2_axes.BrainModelAxis) -> bytes:
    """The CIFTI-2 XML of a one-map dense scalar file, its map named :data:`MAP_NAME_SLOT`.

    Building it (the BrainModelAxis as XML) takes ~0.3 s for 91k grayordinates: the
    geometry builds it once and fills in each map's name (:func:`dscalar_bytes`).
    """
    axes = (cifti2_axes.ScalarAxis([MAP_NAME_SLOT]), brain_models)
    return cifti2_axes.to_header(axes).to_xml()


def dscalar_bytes(values: np.ndarray, xml_template: bytes, label: str) -> bytes:
    """A one-map CIFTI-2 dense scalar file (``ConnDenseScalar``) of float32 ``values``.

    The NIfTI-2 header, the CIFTI extension (``xml_template`` with the map named
    ``label``) and the data, laid out as nibabel writes them (and reads them back).
    """
    name = escape(label or "map").encode()
    header = nib.Nifti2Header()
    header.set_data_shape((1, 1, 1, 1, 1, values.size))
    header.set_data_dtype(np.float32)
    header.set_intent(DENSE_SCALAR_INTENT)
    header.extensions.append(Cifti2Extension.from_bytes(xml_template.replace(_SLOT, name)))
    offset = header.single_vox_offset + header.extensions.get_sizeondisk()
    header.set_data_offset(offset)
    stream = io.BytesIO()
    header.write_to(stream)
    stream.write(b"\0" * (offset - stream.tell()))
    stream.write(np.asarray(values, dtype=header.get_data_dtype()).tobytes())
    return stream.getvalue()


@dataclass(frozen=True)
class CiftiSeries:
    """The analysed grayordinates' time series of one run (as ``MaskedSeries`` for volumes).

    ``mean_volume`` is None: grayordinates have no underlay volume.
    """

    data: np.ndarray
    usable: np.ndarray
    mean_volume: None = None


def read_cifti_series(
    path: Path,
    geometry: CiftiGeometry,
    smoothing_fwhm_mm: float = 0.0,
    keep_volumes: np.ndarray | None = None,
) -> CiftiSeries:
    """A run's dense time series as (T_kept, V) float32, V the analysed grayordinates.

    Parameters
    ----------
    path : Path
        The run's ``.dtseries.nii``.
    geometry : CiftiGeometry
        The unit's grayordinates (:func:`cifti_geometry`, which checked that every run's
        ``BrainModelAxis`` equals them): the file's XML is not parsed again, only its
        number of grayordinates checked.
    smoothing_fwhm_mm : float
        FWHM of the smoothing (0 for none): each cortex along its mesh
        (``geometry.meshes``), each voxel structure within its own voxels, among the
        analysed grayordinates that are finite and not constant
        (:func:`bids_glm.image.cifti_smooth.smooth_grayordinates`).
    keep_volumes : ndarray of bool, shape (n_volumes,), optional
        Volumes to keep.
    """
    _check_meshes(geometry, smoothing_fwhm_mm, path)
    data = _matrix(Path(path), len(geometry.brain_models), keep_volumes)
    if smoothing_fwhm_mm > 0:
        data = _smoothed(data, geometry, smoothing_fwhm_mm, Path(path))
    if not geometry.mask.all():
        data = geometry.from_grayordinates(data)
    data = np.ascontiguousarray(data, dtype=np.float32)
    usable = usable_columns(data)
    log_unusable(path, usable, "grayordinates")
    return CiftiSeries(data=data, usable=usable)


def _matrix(
    path: Path, n_grayordinates: int, keep_volumes: np.ndarray | None = None
) -> np.ndarray:
    """The (T_kept, N) float32 matrix of a dense series, from its NIfTI-2 header alone.

    Read :data:`READ_GRAYORDINATES` columns at a time
    (:meth:`bids_glm.image.cifti_columns.CiftiColumns.grayordinates`) into one C-order
    array, so no second copy of the run is held.

    Raises
    ------
    InputError
        As :func:`bids_glm.image.cifti_columns.cifti_columns`, or the file is shorter than
        its header says.
    """
    columns = cifti_columns(path, n_grayordinates, keep_volumes=keep_volumes)
    data = np.empty((columns.n_kept, n_grayordinates), dtype=np.float32)
    for start in range(0, n_grayordinates, READ_GRAYORDINATES):
        stop = min(start + READ_GRAYORDINATES, n_grayordinates)
        data[:, start:stop] = columns.grayordinates(start, stop)
    return data


def cifti_smoother(
    geometry: CiftiGeometry, fwhm_mm: float, path: Path, included: np.ndarray
) -> Callable[[np.ndarray], None]:
    """Smooths a run's (b, N) float32 blocks of volumes in place, structure by structure.

    Each cortex along its mesh, each voxel structure within itself, among the ``included``
    grayordinates (analysed, finite and not constant over the run), as
    :func:`read_cifti_series` smooths a held run
    (:func:`bids_glm.image.cifti_smooth.grayordinate_smoother`).

    Raises
    ------
    InputError
        The unit has no meshes, or a mesh does not match its cortex (names ``path``).
    """
    # deferred: mesh smoothing (scipy.sparse, scipy.spatial) loads only when it is asked for
    from bids_glm.image.cifti_smooth import grayordinate_smoother

    _check_meshes(geometry, fwhm_mm, path)
    meshes = {"L": read_mesh(geometry.meshes.left), "R": read_mesh(geometry.meshes.right)}
    try:
        axis = geometry.brain_models
        return grayordinate_smoother(axis, meshes, fwhm_mm, included, thread_budget())
    except ValueError as err:  # planning checked the meshes' vertex counts: a changed file
        raise InputError(f"{path}: {err}") from None


def _check_meshes(geometry: CiftiGeometry, fwhm_mm: float, path: Path) -> None:
    if fwhm_mm > 0 and geometry.meshes is None:
        raise InputError(
            f"{path}: --smoothing-fwhm {fwhm_mm} needs both cortices' meshes "
            "(see --surface-mesh-dir)"
        )


def _smoothed(data: np.ndarray, geometry: CiftiGeometry, fwhm_mm: float, path: Path) -> np.ndarray:
    """All grayordinates' (T, N) float32 C-order data smoothed structure by structure, in place.

    Grayordinates not analysed are set constant first, so they take no part.
    """
    # deferred: mesh smoothing (scipy.sparse, scipy.spatial) loads only when it is asked for
    from bids_glm.image.cifti_smooth import smooth_in_blocks

    data[:, ~geometry.mask] = 0.0
    finite, varying = finite_and_varying(data)
    return smooth_in_blocks(data, cifti_smoother(geometry, fwhm_mm, path, finite & varying))


def cifti_geometry(
    runs: Sequence[tuple[Path, cifti2_axes.BrainModelAxis]], meshes: MeshFiles | None = None
) -> CiftiGeometry:
    """The grayordinates of a unit's runs: each run's path and ``BrainModelAxis``.

    The axes are those discovery parsed (``CiftiHeader``); ``meshes``: both
    cortices' meshes, to smooth along (if any).

    Raises
    ------
    InputError
        A run whose ``BrainModelAxis`` differs from the first run's (names both files).
    """
    first_path, first = runs[0]
    for path, found in runs[1:]:
        if found is not first and found != first:
            raise InputError(
                f"{path}: {len(found)} grayordinates in its BrainModelAxis, which differs from "
                f"{Path(first_path).name} ({len(first)}); expected runs on the same grayordinates"
            )
    return CiftiGeometry.whole(first, meshes)
