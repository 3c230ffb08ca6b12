"""The meshes each surface unit is smoothed along, found while planning (before any fit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from bids_glm.errors import InputError
from bids_glm.image.mesh import MeshFiles
from bids_glm.image.surface import gifti_header
from bids_glm.inputs.meshes import check_mesh_vertices, mesh_query, require_meshes
from bids_glm.pipeline.plan import PlanningFailure
from bids_glm.pipeline.units import AnalysisUnit
from bids_glm.settings import Settings


def unit_meshes(unit: AnalysisUnit, settings: Settings) -> MeshFiles | None:
    """The unit's mesh pair when its surface data are smoothed; None otherwise.

    Raises
    ------
    InputError
        No mesh pair was found (lists every place searched), or a mesh's vertex count
        differs from the data's (names both files).
    """
    first = unit.designs[0].run
    fwhm_mm = settings.model.smoothing_fwhm_mm
    if not first.surface_paths or fwhm_mm <= 0:
        return None
    why = f"--smoothing-fwhm {fwhm_mm:g} on {unit.name}"
    meshes = require_meshes(mesh_query(settings, unit.entities), why)
    counts = [gifti_header(path).n_vertices for path in first.surface_paths]
    check_mesh_vertices(meshes, counts, first.surface_paths)
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
