"""Smoothing CIFTI grayordinate data: cortices along their meshes, voxels within structures.

A dense CIFTI series (``..._space-fsLR_den-91k_bold.dtseries.nii``) holds both cortices'
vertices (a subset of the fsLR 32k meshes: the medial wall is left out) and subcortical
voxel structures. :func:`smooth_grayordinates` smooths each cortex along its mesh among
its grayordinate vertices that are finite and not constant (the mesh's other vertices
take no part), and each voxel structure within its own finite, non-constant voxels
(:func:`bids_glm.image.mesh_smooth.smooth_voxel_structure`), so nothing crosses from one
structure, or hemisphere, to another, and unusable values never spread. Volumes are
smoothed :data:`BLOCK_VOLUMES` at a time, in place: the extra memory is each structure's
operator and a block's worth of its values, whatever the run's length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from nibabel.cifti2 import BrainModelAxis

from bids_glm.image.cifti_header import CORTEX_STRUCTURES
from bids_glm.image.mesh import Mesh
from bids_glm.image.mesh_smooth import mesh_smoother, voxel_kernel
from bids_glm.image.usable import finite_and_varying
from bids_glm.runtime.threads import for_each_in_threads

BLOCK_VOLUMES = 128  # volumes smoothed at a time: the working memory does not grow with T


def smooth_grayordinates(
    data: np.ndarray,
    axis: BrainModelAxis,
    meshes: Mapping[str, Mesh],
    fwhm_mm: float,
    in_place: bool = False,
) -> np.ndarray:
    """(T, N) grayordinate data smoothed structure by structure, as a C-order float32 array.

    Parameters
    ----------
    data : ndarray, shape (T, N)
        One value per grayordinate of ``axis`` per volume.
    axis : nibabel.cifti2.BrainModelAxis
        The grayordinates (the series' second axis).
    meshes : mapping of str to Mesh
        ``{"L": mesh, "R": mesh}``: each cortex's mesh, with the axis' vertex count.
    fwhm_mm : float
        Kernel FWHM in mm (> 0).
    in_place : bool
        Smooth ``data`` itself (it must then be float32 and C-ordered) rather than a copy.

    Raises
    ------
    ValueError
        A cortex has no mesh, or a mesh's vertex count differs from the axis'.
    """
    smoothed = data if in_place else np.array(data, dtype=np.float32, order="C")
    if smoothed.dtype != np.float32 or not smoothed.flags.c_contiguous:
        raise ValueError("in_place: expected C-ordered float32 data")
    finite, varying = finite_and_varying(smoothed)
    return smooth_in_blocks(
        smoothed, grayordinate_smoother(axis, meshes, fwhm_mm, finite & varying)
    )


def smooth_in_blocks(data: np.ndarray, smooth: Callable[[np.ndarray], None]) -> np.ndarray:
    """``data`` (T, N) smoothed in place by ``smooth``, :data:`BLOCK_VOLUMES` rows at a time."""
    for start in range(0, data.shape[0], BLOCK_VOLUMES):
        smooth(data[start : start + BLOCK_VOLUMES])
    return data


def grayordinate_smoother(
    axis: BrainModelAxis,
    meshes: Mapping[str, Mesh],
    fwhm_mm: float,
    included: np.ndarray,
    n_threads: int = 1,
) -> Callable[[np.ndarray], None]:
    """Smooths a (b, N) float32 block of volumes in place, as `smooth_grayordinates` does.

    Parameters
    ----------
    axis, meshes, fwhm_mm
        As in `smooth_grayordinates`.
    included : ndarray of bool, shape (N,)
        The grayordinates that take part (finite and not constant over the run); the
        others keep their values.
    n_threads : int
        Threads the structures are smoothed in (each writes its own columns; the sparse
        products release the GIL).

    Raises
    ------
    ValueError
        A cortex has no mesh, or a mesh's vertex count differs from the axis'.
    """
    smoothers = []
    for name, where, model in axis.iter_structures():
        part = included[where]
        if name in CORTEX_STRUCTURES:
            smoothers.append((where, _cortex_smoother(name, model, meshes, part, fwhm_mm)))
        elif part.any():  # only the structure's usable voxels, among themselves
            smoothers.append((where, _structure_smoother(model, part, fwhm_mm)))

    def smooth(block: np.ndarray) -> None:
        def smooth_structure(item: tuple[slice, Callable[[np.ndarray], None]]) -> None:
            item[1](block[:, item[0]])  # a view: smoothed where it lies

        for_each_in_threads(smooth_structure, smoothers, n_threads, "cifti-smooth")

    return smooth


def _cortex_smoother(
    name: str, model: BrainModelAxis, meshes: Mapping[str, Mesh], usable, fwhm_mm: float
) -> Callable[[np.ndarray], None]:
    """Smooths a block of one cortex's volumes in place, on its whole mesh."""
    hemi = CORTEX_STRUCTURES[name]
    mesh = meshes.get(hemi)
    n_vertices = int(model.nvertices[name])
    if mesh is None or mesh.n_vertices != n_vertices:
        found = "none" if mesh is None else f"{mesh.n_vertices} vertices"
        raise ValueError(
            f"{name}: expected a hemi-{hemi} mesh of {n_vertices} vertices; found {found}"
        )
    included = np.zeros(n_vertices, dtype=bool)
    included[model.vertex[usable]] = True
    smoother = mesh_smoother(mesh, fwhm_mm, included)

    def smooth(block: np.ndarray) -> None:
        full = np.zeros((block.shape[0], n_vertices), dtype=np.float32)
        full[:, model.vertex] = block
        smoother.apply_in_place(full)
        block[...] = full[:, model.vertex]

    return smooth


def _structure_smoother(
    model: BrainModelAxis, usable: np.ndarray, fwhm_mm: float
) -> Callable[[np.ndarray], None]:
    """Smooths a block of one voxel structure's volumes in place, among its usable voxels."""
    kernel_t = voxel_kernel(model.voxel[usable], model.affine, fwhm_mm).T

    def smooth(block: np.ndarray) -> None:
        block[:, usable] = np.asarray(block[:, usable] @ kernel_t, dtype=np.float32)

    return smooth
