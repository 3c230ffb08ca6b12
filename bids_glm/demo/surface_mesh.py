"""Synthetic hemisphere meshes for the surface demo, written with TemplateFlow's names.

Two sphere triangulations stand in for the templates' midthickness surfaces:

* an icosphere: the icosahedron with each triangle split in four ``order`` times, giving
  ``10 * 4**order + 2`` vertices: order 5 has 10242, the vertex count of ``fsaverage5``;
* a Fibonacci sphere of ``n`` nearly evenly spread points (``n = 32492``: ``fsLR`` 32k),
  triangulated as their convex hull.

Each unit sphere is scaled to an ellipsoid of hemisphere size and moved to its side (left
at negative x). :func:`write_mesh` writes a GIfTI ``.surf.gii`` (a ``POINTSET`` and a
``TRIANGLE`` array) such as ``tpl-fsaverage/tpl-fsaverage_hemi-L_den-10k_midthickness.surf.gii``,
the file a local TemplateFlow cache holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.gifti import GiftiDataArray, GiftiImage, GiftiMetaData

SEMI_AXES_MM = np.array([35.0, 80.0, 60.0])  # one hemisphere: x (medial-lateral), y, z
CENTRE_OFFSET_MM = 38.0  # each hemisphere's centre from the midline
STRUCTURE = {"L": "CortexLeft", "R": "CortexRight"}
TEMPLATE_DENSITY = {"fsaverage": "10k", "fsLR": "32k"}  # density label of the demo meshes


@dataclass(frozen=True)
class Mesh:
    """A triangulated surface.

    Attributes
    ----------
    vertices : ndarray of float64, shape (V, 3)
        Coordinates (unit sphere, or mm once placed).
    faces : ndarray of int32, shape (F, 3)
        Vertex indices of each triangle, counter-clockwise seen from outside.
    """

    vertices: np.ndarray
    faces: np.ndarray


def _outward(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Faces reordered so that their normals point away from the origin."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    flip = np.einsum("ij,ij->i", np.cross(b - a, c - a), a + b + c) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces.astype(np.int32)


def _subdivide(vertices: list[np.ndarray], faces: list[tuple]) -> list[tuple]:
    """Split each triangle in four at its edges' midpoints (appended to ``vertices``)."""
    midpoints: dict[tuple[int, int], int] = {}

    def middle(i: int, j: int) -> int:
        key = (min(i, j), max(i, j))
        if key not in midpoints:
            point = vertices[i] + vertices[j]
            vertices.append(point / np.linalg.norm(point))
            midpoints[key] = len(vertices) - 1
        return midpoints[key]

    finer = []
    for a, b, c in faces:
        ab, bc, ca = middle(a, b), middle(b, c), middle(c, a)
        finer += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
    return finer


def icosphere(order: int) -> Mesh:
    """The unit icosphere subdivided ``order`` times (``10 * 4**order + 2`` vertices)."""
    t = (1.0 + 5.0**0.5) / 2.0
    corners = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t)]
    corners += [(0, -1, -t), (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]
    vertices = [np.array(c, dtype=float) / np.linalg.norm(c) for c in corners]
    faces = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4)]
    faces += [(11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8)]
    faces += [(3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]
    for _ in range(order):
        faces = _subdivide(vertices, faces)
    points = np.array(vertices)
    return Mesh(points, _outward(points, np.array(faces)))


def fibonacci_sphere(n_vertices: int) -> Mesh:
    """``n_vertices`` points spread on the unit sphere (golden angle), as their convex hull."""
    from scipy.spatial import ConvexHull

    k = np.arange(n_vertices) + 0.5
    z = 1.0 - 2.0 * k / n_vertices
    azimuth = np.pi * (3.0 - 5.0**0.5) * k
    radius = np.sqrt(1.0 - z**2)
    points = np.column_stack([radius * np.cos(azimuth), radius * np.sin(azimuth), z])
    return Mesh(points, _outward(points, ConvexHull(points).simplices))


def placed(sphere: Mesh, hemi: str) -> Mesh:
    """The unit-sphere mesh as a hemisphere-sized ellipsoid on its side (mm)."""
    side = -1.0 if hemi == "L" else 1.0
    vertices = sphere.vertices * SEMI_AXES_MM + np.array([side * CENTRE_OFFSET_MM, 0.0, 0.0])
    return Mesh(vertices, sphere.faces)


def template_mesh_path(templateflow_dir: Path, template: str, hemi: str) -> Path:
    """``<dir>/tpl-<t>/tpl-<t>_hemi-<h>_den-<d>_midthickness.surf.gii`` (TemplateFlow names)."""
    density = TEMPLATE_DENSITY[template]
    name = f"tpl-{template}_hemi-{hemi}_den-{density}_midthickness.surf.gii"
    return Path(templateflow_dir) / f"tpl-{template}" / name


def write_mesh(path: Path, mesh: Mesh, hemi: str) -> None:
    """Write ``mesh`` as a GIfTI surface (``POINTSET`` in mm, then ``TRIANGLE``)."""
    meta = GiftiMetaData({"AnatomicalStructurePrimary": STRUCTURE[hemi]})
    arrays = [
        GiftiDataArray(
            mesh.vertices.astype(np.float32),
            intent="NIFTI_INTENT_POINTSET",
            datatype="NIFTI_TYPE_FLOAT32",
            encoding="GIFTI_ENCODING_B64GZ",
        ),
        GiftiDataArray(
            mesh.faces.astype(np.int32),
            intent="NIFTI_INTENT_TRIANGLE",
            datatype="NIFTI_TYPE_INT32",
            encoding="GIFTI_ENCODING_B64GZ",
        ),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(GiftiImage(meta=meta, darrays=arrays).to_bytes())
