"""The repetition time of a run: sidecars first, then the image header, with a warning when
they disagree."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib

from bids_glm.errors import InputError

LOGGER = logging.getLogger("bids_glm")
TR_RELATIVE_TOLERANCE = 1e-3


def header_tr_s(image: nib.Nifti1Image) -> float | None:
    """The NIfTI header's TR in seconds (``pixdim[4]`` and its time unit), None if unset."""
    zooms = image.header.get_zooms()
    if len(zooms) < 4 or zooms[3] <= 0:
        return None
    _, time_unit = image.header.get_xyzt_units()
    return float(zooms[3]) * {"msec": 1e-3, "usec": 1e-6}.get(time_unit, 1.0)


def resolve_tr_s(
    bold_path: Path,
    derivative_meta: Mapping,
    raw_meta: Mapping,
    header_tr_s: float | None,
    header_name: str = "NIfTI header",
) -> float:
    """Repetition time from the derivative sidecar, then the raw sidecar, then the header.

    A warning names the sources when they disagree.
    """
    sources = {
        "derivative sidecar": derivative_meta.get("RepetitionTime"),
        "raw sidecar": raw_meta.get("RepetitionTime"),
        header_name: header_tr_s,
    }
    try:
        found = {name: float(v) for name, v in sources.items() if v is not None}
    except (TypeError, ValueError):
        values = ", ".join(f"{v!r} ({n})" for n, v in sources.items() if v is not None)
        raise InputError(
            f"{bold_path}: RepetitionTime {values}: expected a number of seconds"
        ) from None
    if not found:
        raise InputError(
            f"{bold_path}: no RepetitionTime in its sidecars and no TR in the {header_name}"
        )
    chosen_name, chosen = next(iter(found.items()))
    if chosen <= 0:
        raise InputError(f"{bold_path}: RepetitionTime {chosen} ({chosen_name}) must be > 0 s")
    for name, value in found.items():
        if abs(value - chosen) > TR_RELATIVE_TOLERANCE * chosen:
            LOGGER.warning(
                "%s: TR %.4g s (%s) disagrees with %.4g s (%s); using the %s",
                bold_path.name,
                value,
                name,
                chosen,
                chosen_name,
                chosen_name,
            )
    return chosen
