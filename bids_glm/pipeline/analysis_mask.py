"""The analysis mask of a participant's runs: the user's, the derivatives', or the data's."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from bids_glm.design.run_design import RunDesign
from bids_glm.errors import InputError
from bids_glm.image.cifti import CiftiGeometry, cifti_geometry
from bids_glm.image.cifti_header import is_cifti_series
from bids_glm.image.epi_mask import compute_epi_mask, mean_volume
from bids_glm.image.geometry import VolumeGeometry
from bids_glm.image.mask import combine_masks, load_image, load_mask, same_grid
from bids_glm.image.mesh import MeshFiles
from bids_glm.image.resample import resample_mask_nearest
from bids_glm.image.surface import SurfaceGeometry, gifti_header
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def _on_grid(mask, mask_affine, shape, affine, source) -> np.ndarray:
    if same_grid(mask.shape, mask_affine, shape, affine):
        return mask
    LOGGER.warning(
        "%s: mask grid %s differs from the BOLD grid %s; resampled (nearest neighbour)",
        source,
        mask.shape,
        tuple(shape),
    )
    return resample_mask_nearest(mask, mask_affine, shape, affine)


def build_analysis_mask(
    designs: Sequence[RunDesign], settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """Mask on the BOLD grid of the first run, from ``--mask`` or the runs' brain masks.

    Runs without a brain mask in the derivatives get an EPI mask computed from their
    mean image (with a warning). Masks on another grid are resampled.

    Returns
    -------
    mask : ndarray of bool, shape (x, y, z)
    affine : ndarray, shape (4, 4)
    """
    reference = load_image(designs[0].run.bold_path)
    shape, affine = reference.shape[:3], reference.affine
    if settings.mask is not None:
        user_mask, user_affine = load_mask(settings.mask)
        mask = _on_grid(user_mask, user_affine, shape, affine, settings.mask)
    else:
        masks = []
        for design in designs:
            run = design.run
            if run.mask_path is None:
                LOGGER.warning(
                    "%s: no desc-brain_mask in the derivatives; computing an EPI mask "
                    "from the mean image",
                    run.label,
                )
                mean, mean_affine = mean_volume(run.bold_path)
                try:
                    epi_mask = compute_epi_mask(mean)
                except ValueError as err:
                    raise InputError(
                        f"{run.bold_path}: cannot compute an EPI mask: {err}"
                    ) from None
                run_mask = _on_grid(epi_mask, mean_affine, shape, affine, run.bold_path)
            else:
                run_mask, mask_affine = load_mask(run.mask_path)
                run_mask = _on_grid(run_mask, mask_affine, shape, affine, run.mask_path)
            masks.append(run_mask)
        mask = combine_masks(masks, settings.mask_combine)
    if not mask.any():
        raise InputError(
            f"the analysis mask of {designs[0].run.label} and its other runs is empty "
            f"(rule {settings.mask_combine})"
        )
    return mask, affine


def build_geometry(
    designs: Sequence[RunDesign], settings: Settings, meshes: MeshFiles | None = None
) -> VolumeGeometry | SurfaceGeometry | CiftiGeometry:
    """The unit's geometry: the analysis mask on the BOLD grid, both hemispheres' vertices,
    or the grayordinates of CIFTI runs (their ``BrainModelAxis``, equal in every run).

    Surfaces have no brain mask: every vertex is analysed, and vertices constant or
    non-finite in some run (e.g. the medial wall) are left out after reading. Vertex
    counts must agree between runs. ``meshes``: the surfaces smoothed along, if any
    (both hemispheres', or the cortices' of CIFTI grayordinates).
    """
    first = designs[0].run
    if settings.mask is not None and first.on_surface:
        raise InputError(f"--mask {settings.mask}: a volume mask cannot apply to surface data")
    if is_cifti_series(first.bold_path):  # grayordinates: the runs' BrainModelAxis
        runs = [(d.run.bold_path, d.run.grayordinates.brain_models) for d in designs]
        return cifti_geometry(runs, meshes)
    if not first.surface_paths:
        return VolumeGeometry(*build_analysis_mask(designs, settings))
    counts = tuple(gifti_header(path).n_vertices for path in first.surface_paths)
    for design in designs[1:]:
        for path, expected in zip(design.run.surface_paths, counts, strict=True):
            found = gifti_header(path).n_vertices
            if found != expected:
                raise InputError(
                    f"{path}: {found} vertices, but the same hemisphere of "
                    f"{first.label} has {expected}; expected runs on one mesh"
                )
    return SurfaceGeometry.whole_surface(counts, meshes)
