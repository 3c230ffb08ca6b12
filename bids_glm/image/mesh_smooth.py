"""Smoothing along a cortical mesh (heat diffusion), and within CIFTI voxel structures.

Surface data are smoothed by diffusing them along the mesh: the heat equation
``du/dt = Laplace-Beltrami(u)`` spreads an impulse into a Gaussian of variance ``2 t`` per
direction, so a requested FWHM (``sigma = FWHM / sqrt(8 ln 2)``) is reached at
``t = sigma^2 / 2`` (Chung et al. 2005). The Laplacian is the cotangent one, ``L =
diag(W 1) - W`` with ``W_ij = (cot a + cot b) / 2`` over the edge's opposite angles, and
lumped vertex areas ``M`` (one third of each incident triangle's area); cotangents are
clipped to ``[-cot 1 deg, cot 1 deg]`` so degenerate triangles cannot dominate. The data
are multiplied by the discrete heat kernel ``exp(-t A)``, ``A = M^-1 L``, computed as a
Chebyshev expansion (Hammond et al. 2011): the eigenvalues of ``A`` lie in ``[0, R]``,
``R = max_i (|d_i| + sum_j |W_ij|) / m_i`` (Gershgorin; ``d_i = sum_j W_ij``), where
``exp(-t lambda) = sum_k c_k T_k(2 lambda / R - 1)`` with ``c_k = (2 - [k = 0]) (-1)^k
I_k(t R / 2) exp(-t R / 2)`` (modified Bessel functions); terms are added until ``c_k``
falls below :data:`CHEBYSHEV_TOLERANCE`. That is about ``sqrt(t R)`` sparse products,
where explicit Euler steps would need ``t R``. Since ``A 1 = 0`` and ``M A`` is symmetric,
a constant stays constant and the total mass ``sum_i m_i u_i`` is kept (to the
tolerance). Negative weights (obtuse triangles) are kept, as clipping them at 0 biases
the width by ~5% on irregular meshes. Volumes are smoothed in blocks of
:data:`BLOCK_VOLUMES`, so the working memory stays a few (V, block) arrays.

Vertices left out of the analysis (the medial wall, constant or non-finite vertices) take
no part: the operator is built on the included vertices only (their edges to excluded
vertices are dropped, which is a zero-flux boundary), so their values never leak in and
the weights of each included vertex still sum to one.

CIFTI subcortical structures are smoothed within their own voxels
(:func:`smooth_voxel_structure`): a Gaussian over the voxel centres, truncated at
:data:`TRUNCATE_SIGMAS` sigma and renormalised over the structure's voxels.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse, special
from scipy.spatial import cKDTree

from bids_glm.image.mesh import Mesh

LOGGER = logging.getLogger("bids_glm")
FWHM_PER_SIGMA = math.sqrt(8.0 * math.log(2.0))
MAX_COTANGENT = 1.0 / math.tan(math.radians(1.0))  # a 1-degree angle's weight at most
TRUNCATE_SIGMAS = 3.0
CHEBYSHEV_TOLERANCE = 1e-8
BLOCK_VOLUMES = 32


def heat_time_mm2(fwhm_mm: float) -> float:
    """Diffusion time ``t = sigma^2 / 2`` (mm^2) whose heat kernel has FWHM ``fwhm_mm``."""
    sigma_mm = fwhm_mm / FWHM_PER_SIGMA
    return sigma_mm**2 / 2.0


@dataclass(frozen=True, eq=False)
class MeshSmoother:
    """The heat kernel of one mesh, FWHM and set of included vertices.

    Attributes
    ----------
    shifted : scipy.sparse.csr_matrix, shape (n_included, n_included)
        ``2 A / R - I`` over the included vertices (its eigenvalues lie in [-1, 1]).
    coefficients : ndarray, shape (K,)
        Chebyshev coefficients of ``exp(-t A)`` in powers of ``shifted``.
    included : ndarray of bool, shape (V,)
        The vertices smoothed; the others are returned unchanged.
    """

    shifted: sparse.csr_matrix
    coefficients: np.ndarray
    included: np.ndarray

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Smooth (T, V) data (or one (V,) vector) along the mesh; a new float32 array."""
        smoothed = np.array(data, dtype=np.float32)
        self.apply_in_place(smoothed)
        return smoothed

    def apply_in_place(self, data: np.ndarray) -> None:
        """Smooth a float32 (T, V) array (or a view of one) along the mesh, in place.

        Volumes are smoothed :data:`BLOCK_VOLUMES` at a time, so the extra memory is a few
        (V, block) arrays whatever T.
        """
        rows = data.reshape(1, -1) if data.ndim == 1 else data
        for start in range(0, rows.shape[0], BLOCK_VOLUMES):
            block = rows[start : start + BLOCK_VOLUMES]
            values = np.ascontiguousarray(block[:, self.included].T)
            block[:, self.included] = self._heat(values).T

    def _heat(self, values: np.ndarray) -> np.ndarray:
        """``exp(-t A)`` times (n_included, b) values, by the Chebyshev recurrence.

        ``T_0 = v``, ``T_1 = X v``, ``T_k+1 = 2 X T_k - T_k-1``; in place, so a block
        needs four arrays of its size.
        """
        coefficients = self.coefficients.tolist()  # Python floats keep float32 data float32
        result = values * coefficients[0]
        if len(coefficients) == 1:
            return result
        previous, current = values.copy(), self.shifted @ values
        result += coefficients[1] * current
        for coefficient in coefficients[2:]:
            following = self.shifted @ current
            following *= 2.0
            following -= previous
            previous, current = current, following
            result += coefficient * current
        return result


def heat_coefficients(time_spectrum: float) -> np.ndarray:
    """Chebyshev coefficients of ``exp(-t lambda)`` on ``[0, R]``; ``time_spectrum = t R``."""
    half = time_spectrum / 2.0
    order = np.arange(int(half + 10.0 * math.sqrt(half + 1.0)) + 12)
    coefficients = 2.0 * (-1.0) ** order * special.ive(order, half)
    coefficients[0] /= 2.0
    significant = np.flatnonzero(np.abs(coefficients) >= CHEBYSHEV_TOLERANCE)
    return coefficients[: significant.max() + 1]


def cotangent_weights(mesh: Mesh) -> sparse.csr_matrix:
    """Symmetric (V, V) cotangent weights ``(cot a + cot b) / 2`` of each edge of ``mesh``.

    ``a`` and ``b`` are the angles opposite the edge in its two triangles (one on a
    border). With the vertex areas as mass, ``L = diag(W 1) - W`` discretises the
    Laplace-Beltrami operator (Pinkall & Polthier 1993; Meyer et al. 2003).
    """
    rows, cols, values = [], [], []
    for k in range(3):  # the angle at corner k is opposite the edge (k+1, k+2)
        i, j, o = (mesh.triangles[:, (k + s) % 3] for s in (1, 2, 0))
        u = mesh.vertices_mm[i] - mesh.vertices_mm[o]
        v = mesh.vertices_mm[j] - mesh.vertices_mm[o]
        cross = np.linalg.norm(np.cross(u, v), axis=1)
        cot = np.einsum("ij,ij->i", u, v) / np.maximum(cross, np.finfo(float).tiny)
        rows += [i, j]
        cols += [j, i]
        values += [0.5 * cot, 0.5 * cot]
    shape = (mesh.n_vertices,) * 2
    weights = sparse.coo_matrix(
        (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=shape
    )
    return weights.tocsr()  # duplicates (an edge's two triangles) are summed


def mesh_smoother(mesh: Mesh, fwhm_mm: float, included: np.ndarray | None = None) -> MeshSmoother:
    """Build the heat kernel that smooths data on ``mesh`` to ``fwhm_mm`` (see module doc).

    Parameters
    ----------
    mesh : Mesh
        The hemisphere's mesh (coordinates in mm).
    fwhm_mm : float
        Full width at half maximum of the smoothing kernel, > 0.
    included : ndarray of bool, shape (V,), optional
        Vertices taking part (default: all); the others neither give nor receive.
    """
    if fwhm_mm <= 0:
        raise ValueError(f"fwhm_mm must be > 0; got {fwhm_mm}")
    if included is None:
        included = np.ones(mesh.n_vertices, dtype=bool)
    included = np.asarray(included, dtype=bool)
    weights = cotangent_weights(mesh)
    weights.data = np.clip(weights.data, -MAX_COTANGENT, MAX_COTANGENT)
    weights = weights[included][:, included].tocsr()
    weights.eliminate_zeros()
    area_mm2 = mesh.vertex_areas_mm2()[included]
    inverse_area = np.where(area_mm2 > 0, 1.0 / np.where(area_mm2 > 0, area_mm2, 1.0), 0.0)
    degree = np.asarray(weights.sum(axis=1)).ravel()
    spread = np.abs(degree) + np.asarray(abs(weights).sum(axis=1)).ravel()
    bound = max(float((spread * inverse_area).max(initial=0.0)), 1e-12)  # eigenvalues of A
    laplacian = sparse.diags(inverse_area) @ (sparse.diags(degree) - weights)
    shifted = (2.0 / bound) * laplacian - sparse.identity(len(degree))
    coefficients = heat_coefficients(heat_time_mm2(fwhm_mm) * bound)
    LOGGER.debug("mesh smoothing: %d Chebyshev terms", len(coefficients))
    return MeshSmoother(shifted.tocsr().astype(np.float32), coefficients, included)


def smooth_on_mesh(
    data: np.ndarray, mesh: Mesh, fwhm_mm: float, included: np.ndarray | None = None
) -> np.ndarray:
    """(T, V) data smoothed along ``mesh`` to ``fwhm_mm`` among the ``included`` vertices."""
    return mesh_smoother(mesh, fwhm_mm, included).apply(data)


def smooth_voxel_structure(
    data: np.ndarray, voxels_ijk: np.ndarray, affine: np.ndarray, fwhm_mm: float
) -> np.ndarray:
    """Smooth one CIFTI volume structure's (T, n) data within its own voxels.

    Each voxel's value becomes the Gaussian-weighted mean (FWHM ``fwhm_mm``, truncated at
    :data:`TRUNCATE_SIGMAS` sigma) of the structure's voxels only, so other structures
    and empty space neither contribute nor dilute (the weights are renormalised).

    Parameters
    ----------
    data : ndarray, shape (T, n) or (n,)
        The structure's values, one column per voxel.
    voxels_ijk : ndarray of int, shape (n, 3)
        The voxels' indices (CIFTI ``BrainModelAxis.voxel`` of the structure).
    affine : ndarray, shape (4, 4)
        Voxel indices to mm (the axis' ``affine``).
    fwhm_mm : float
        Kernel FWHM in mm; 0 returns the data unchanged.
    """
    data = np.asarray(data, dtype=np.float32)
    if fwhm_mm <= 0 or data.shape[-1] == 0:
        return data.copy()
    return np.asarray(data @ voxel_kernel(voxels_ijk, affine, fwhm_mm).T, dtype=np.float32)


def voxel_kernel(voxels_ijk: np.ndarray, affine: np.ndarray, fwhm_mm: float) -> sparse.csr_matrix:
    """The (n, n) weights of `smooth_voxel_structure`: smoothed = data @ kernel.T."""
    return _voxel_kernel(np.asarray(voxels_ijk, float), np.asarray(affine), fwhm_mm)


def _voxel_kernel(voxels_ijk: np.ndarray, affine: np.ndarray, fwhm_mm: float) -> sparse.csr_matrix:
    """Row-normalised truncated Gaussian weights between voxels (float32, int32 indices).

    Built in single precision and normalised in place: at fMRIPrep's 31,870 subcortical
    voxels and 6 mm, ~7 M weights, so float64 and a sparse row-scaling product would cost
    ~0.4 GB and seconds more.
    """
    sigma_mm = fwhm_mm / FWHM_PER_SIGMA
    centres_mm = voxels_ijk @ affine[:3, :3].T
    pairs = cKDTree(centres_mm).query_pairs(TRUNCATE_SIGMAS * sigma_mm, output_type="ndarray")
    pairs = pairs.astype(np.int32).reshape(-1, 2)
    n = centres_mm.shape[0]
    distance_mm = np.linalg.norm(centres_mm[pairs[:, 0]] - centres_mm[pairs[:, 1]], axis=1)
    near = np.exp(-0.5 * (distance_mm / sigma_mm) ** 2).astype(np.float32)
    own = np.arange(n, dtype=np.int32)
    rows = np.concatenate([pairs[:, 0], pairs[:, 1], own])  # both ways, and self
    cols = np.concatenate([pairs[:, 1], pairs[:, 0], own])
    values = np.concatenate([near, near, np.ones(n, dtype=np.float32)])
    kernel = sparse.csr_matrix((values, (rows, cols)), shape=(n, n))
    row_sums = np.add.reduceat(kernel.data.astype(np.float64), kernel.indptr[:-1])
    kernel.data /= np.repeat(row_sums, np.diff(kernel.indptr)).astype(np.float32)
    return kernel
