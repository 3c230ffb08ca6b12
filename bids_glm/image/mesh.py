"""Triangle meshes of the cortex (GIfTI ``.surf.gii``): vertices, triangles and their measures.

A :class:`Mesh` holds vertex coordinates in mm and triangles (vertex indices), as
FreeSurfer, fMRIPrep and TemplateFlow write them (a ``NIFTI_INTENT_POINTSET`` array and a
``NIFTI_INTENT_TRIANGLE`` array). Its measures (edges, lengths, triangle and vertex areas)
are pure functions of the two arrays; the sparse operators built on them live with their
one user (cotangent weights: :mod:`bids_glm.image.mesh_smooth`; vertex adjacency:
:mod:`bids_glm.glm.surface_clusters`), so reading a mesh needs no ``scipy.sparse``.
:class:`MeshFiles` are the two hemispheres' mesh files a surface analysis uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from xml.etree import ElementTree

import nibabel as nib
import numpy as np
from nibabel.gifti import GiftiImage

from bids_glm.errors import InputError

POINTSET_INTENT = "NIFTI_INTENT_POINTSET"
TRIANGLE_INTENT = "NIFTI_INTENT_TRIANGLE"


@dataclass(frozen=True)
class MeshFiles:
    """The left and right hemisphere's mesh files (``*_midthickness.surf.gii``)."""

    left: Path
    right: Path

    @property
    def paths(self) -> tuple[Path, Path]:
        """``(left, right)``."""
        return (self.left, self.right)


@dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh.

    Attributes
    ----------
    vertices_mm : ndarray of float64, shape (V, 3)
        Vertex coordinates in mm.
    triangles : ndarray of int64, shape (F, 3)
        Vertex indices of each triangle.
    """

    vertices_mm: np.ndarray
    triangles: np.ndarray

    @property
    def n_vertices(self) -> int:
        """Number of vertices."""
        return int(self.vertices_mm.shape[0])

    def edges(self) -> np.ndarray:
        """Unique undirected edges as (E, 2) vertex indices, smaller index first."""
        return self._edges

    @cached_property
    def _edges(self) -> np.ndarray:  # computed once per mesh (a pure function of it)
        pairs = np.sort(self.triangles[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
        keys = np.unique(pairs[:, 0] * np.int64(self.n_vertices) + pairs[:, 1])
        return np.stack([keys // self.n_vertices, keys % self.n_vertices], axis=1)

    def edge_lengths_mm(self) -> np.ndarray:
        """Length of each edge of :meth:`edges`, in mm."""
        ends = self.vertices_mm[self.edges()]
        return np.linalg.norm(ends[:, 0] - ends[:, 1], axis=1)

    def triangle_areas_mm2(self) -> np.ndarray:
        """Area of each triangle in mm^2."""
        a, b, c = (self.vertices_mm[self.triangles[:, k]] for k in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def vertex_areas_mm2(self) -> np.ndarray:
        """Area of each vertex in mm^2: one third of the areas of its triangles."""
        thirds = np.repeat(self.triangle_areas_mm2() / 3.0, 3)
        return np.bincount(self.triangles.ravel(), thirds, minlength=self.n_vertices)


def read_mesh(path: Path) -> Mesh:
    """A GIfTI surface (``.surf.gii``): its pointset (mm) and triangle arrays.

    Raises
    ------
    InputError
        The file is unreadable or lacks a (V, 3) pointset or an (F, 3) triangle array.
    """
    try:
        image = nib.load(str(path))
    except Exception as err:  # nibabel raises many kinds for a bad file
        raise InputError(f"{path}: not a readable GIfTI surface ({err})") from None
    if not isinstance(image, GiftiImage):
        raise InputError(f"{path}: expected a GIfTI surface (.surf.gii)")
    points = _array(image, POINTSET_INTENT, np.floating)
    triangles = _array(image, TRIANGLE_INTENT, np.integer)
    if points is None or triangles is None:
        raise InputError(
            f"{path}: expected a GIfTI surface with a {POINTSET_INTENT} (V x 3) and a "
            f"{TRIANGLE_INTENT} (F x 3) data array"
        )
    triangles = triangles.astype(np.int64)
    if triangles.size and (triangles.min() < 0 or triangles.max() >= len(points)):
        raise InputError(f"{path}: triangle indices outside the {len(points)} vertices")
    return Mesh(points.astype(np.float64), triangles)


def _array(image: GiftiImage, intent: str, kind) -> np.ndarray | None:
    """The (N, 3) data array of ``intent``, else the first (N, 3) array of dtype ``kind``."""
    shaped = [
        (np.asarray(d.data), nib.nifti1.intent_codes.niistring[d.intent])
        for d in image.darrays
        if np.ndim(d.data) == 2 and np.shape(d.data)[1] == 3
    ]
    for array, found in shaped:
        if found == intent:
            return array
    return next((a for a, _ in shaped if np.issubdtype(a.dtype, kind)), None)


def mesh_vertex_count(path: Path) -> int:
    """Vertices of a ``.surf.gii``, from its XML header only (the pointset's first dimension).

    Raises
    ------
    InputError
        The file is unreadable or has no (V, 3) pointset.
    """
    try:
        for _, element in ElementTree.iterparse(str(path), events=("end",)):
            if element.tag != "DataArray":
                continue
            dims = (element.get("Dim0"), element.get("Dim1"))
            intent = element.get("Intent", "")
            element.clear()
            if intent == POINTSET_INTENT and dims[1] == "3":
                return int(dims[0])
    except (OSError, ElementTree.ParseError, ValueError) as err:
        raise InputError(f"{path}: not a readable GIfTI surface ({err})") from None
    raise InputError(f"{path}: expected a GIfTI surface with a {POINTSET_INTENT} (V x 3) array")
