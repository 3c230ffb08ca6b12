"""CIFTI runs in fMRIPrep derivatives: ``..._space-fsLR_den-91k_bold.dtseries.nii``.

fMRIPrep's ``--cifti-output 91k`` (or ``170k``) writes one dense time series per run, with
a ``den`` entity and no ``desc``. When the series exist at several densities, one must be
chosen (``--space fsLR:den-91k``): the densities are different analyses, not grids of one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from bids_glm.errors import InputError
from bids_glm.image.cifti_header import DENSE_SERIES_EXTENSION, CiftiHeader, cifti_header
from bids_glm.inputs.entities import split_name
from bids_glm.inputs.surface_runs import space_bolds
from bids_glm.inputs.variants import describe, select_grid
from bids_glm.settings import Settings


def cifti_bolds(layout, filters: Mapping[str, object], settings: Settings) -> list[str]:
    """The ``bold.dtseries.nii`` of the requested space, at one density.

    Raises
    ------
    InputError
        None found (says what was looked for and the spaces present), or several densities
        and none chosen (lists them and says how to choose).
    """
    pattern = f"*_space-{settings.space}_den-<label>_bold{DENSE_SERIES_EXTENSION}"
    found = space_bolds(layout, filters, settings, DENSE_SERIES_EXTENSION, pattern)
    densities = sorted({str(split_name(p)[0].get("den")) for p in found}, key=_numeric_order)
    if settings.density is None and len(densities) > 1:
        listed = ", ".join(describe("den", d) for d in densities)
        raise InputError(
            f"--space {settings.space}: CIFTI series at several densities ({listed}); choose "
            f"one, e.g. --space {settings.space}:den-{densities[0]}"
        )
    return select_grid(found, settings.space, {"res": None, "den": settings.density})


def cifti_run_facts(path: Path) -> tuple[dict[str, str], CiftiHeader]:
    """A CIFTI run's entities and header (volumes, grayordinates, time step in seconds)."""
    return split_name(path)[0], cifti_header(path)


def _numeric_order(label: str) -> tuple[int, str]:
    """``91k`` before ``170k``: by leading digits, then text."""
    digits = re.match(r"\d*", label).group()
    return (int(digits) if digits else 1 << 30, label)
