"""Each surface unit's meshes, found while planning (before any fit).

Smoothing needs them (no mesh is then an error); otherwise they are looked for all the
same, for the report's pictures, and a missing or unusable mesh is only logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.image.cifti_header import CORTEX_STRUCTURES, is_cifti_series
from bids_glm.image.mesh import MeshFiles
from bids_glm.image.surface import gifti_header
from bids_glm.inputs.meshes import check_mesh_vertices, find_meshes, mesh_query, require_meshes
from bids_glm.pipeline.units import AnalysisUnit, PlanningFailure
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def _data_vertices(unit: AnalysisUnit) -> tuple[list[int], list[Path]] | None:
    """Each hemisphere's vertex count and the file it comes from; None for volumes.

    GIfTI: the first run's hemisphere files. CIFTI: the cortices of its
    ``BrainModelAxis`` (their meshes' vertex counts, the medial wall included).
    """
    first = unit.designs[0].run
    if first.surface_paths:
        counts = [gifti_header(path).n_vertices for path in first.surface_paths]
        return counts, list(first.surface_paths)
    if not is_cifti_series(first.bold_path):
        return None
    models = first.grayordinates.brain_models
    counts = [int(models.nvertices.get(name, 0)) for name in CORTEX_STRUCTURES]
    return counts, [first.bold_path, first.bold_path]


def unit_meshes(unit: AnalysisUnit, settings: Settings) -> MeshFiles | None:
    """The unit's mesh pair (surface and CIFTI data only); required when smoothing.

    Raises
    ------
    InputError
        Smoothing, and no mesh pair was found (lists every place searched) or a mesh's
        vertex count differs from the data's (names both files).
    """
    vertices = _data_vertices(unit)
    if vertices is None:
        return None
    counts, sources = vertices
    fwhm_mm = settings.model.smoothing_fwhm_mm
    query = mesh_query(settings, unit.entities)
    if fwhm_mm > 0:
        meshes = require_meshes(query, f"--smoothing-fwhm {fwhm_mm:g} on {unit.name}")
        check_mesh_vertices(meshes, counts, sources)
        return meshes
    try:
        meshes = find_meshes(query).files
        if meshes is not None:
            check_mesh_vertices(meshes, counts, sources)
    except InputError as err:
        LOGGER.warning("%s: no mesh for the report's surface figures: %s", unit.name, err)
        return None
    return meshes


def with_meshes(
    units: Sequence[AnalysisUnit], settings: Settings
) -> tuple[list[AnalysisUnit], list[PlanningFailure]]:
    """Units with their smoothing meshes attached; those without usable meshes as failures."""
    ready, failures = [], []
    for unit in units:
        try:
            ready.append(replace(unit, meshes=unit_meshes(unit, settings)))
        except InputError as err:
            failures.append(PlanningFailure(unit.entities, str(err)))
    return ready, failures
