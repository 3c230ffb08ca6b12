"""What discovery reads of a CIFTI-2 dense time series: its header, never its data.

A run's ``.dtseries.nii`` is recognised by its extension (:func:`is_cifti_series`), and its
volumes, grayordinates (``BrainModelAxis``) and time step are read from the NIfTI-2 header
and its CIFTI XML (:func:`cifti_header`). Reading the data, smoothing it and writing maps
are :mod:`bids_glm.image.cifti`'s; this module is apart so that discovery, which meets
every kind of series, imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
from nibabel.cifti2 import cifti2_axes
from nibabel.cifti2.parse_cifti2 import Cifti2Extension

from bids_glm.errors import InputError

DENSE_SERIES_EXTENSION = ".dtseries.nii"
SECONDS_PER_UNIT = {"SECOND": 1.0}  # SeriesAxis units that give a time step
CORTEX_STRUCTURES = {"CIFTI_STRUCTURE_CORTEX_LEFT": "L", "CIFTI_STRUCTURE_CORTEX_RIGHT": "R"}


def is_cifti_series(path: Path | str) -> bool:
    """Whether ``path`` names a CIFTI-2 dense time series (``.dtseries.nii``)."""
    return str(path).endswith(DENSE_SERIES_EXTENSION)


@dataclass(frozen=True)
class CiftiHeader:
    """What discovery needs of a dense time series, read without decoding its data.

    Attributes
    ----------
    n_volumes : int
    brain_models : nibabel.cifti2.cifti2_axes.BrainModelAxis
        The grayordinates (columns) of the file.
    time_step_s : float or None
        The ``SeriesAxis`` step in seconds; None when its unit is not time or it is <= 0.
    """

    n_volumes: int
    brain_models: cifti2_axes.BrainModelAxis
    time_step_s: float | None


def read_nifti2_header(path: Path) -> nib.Nifti2Header:
    """The NIfTI-2 header of a CIFTI-2 file; its CIFTI XML is parsed only when asked for.

    Raises
    ------
    InputError
        Not a NIfTI-2 file with a CIFTI extension and a 2-D matrix.
    """
    try:
        with open(path, "rb") as stream:
            header = nib.Nifti2Header.from_fileobj(stream)
    except Exception as err:  # nibabel raises many kinds for a bad file
        raise InputError(f"{path}: not a readable CIFTI-2 file ({err})") from None
    shape = header.get_data_shape()
    cifti = [e for e in header.extensions if isinstance(e, Cifti2Extension)]
    if len(shape) != 6 or shape[:4] != (1, 1, 1, 1) or len(cifti) != 1:
        raise InputError(f"{path}: expected a CIFTI-2 dense time series (.dtseries.nii)")
    return header


def cifti_header(path: Path) -> CiftiHeader:
    """Volumes, grayordinates and time step of a ``.dtseries.nii`` (data not decoded).

    The one place a run's CIFTI XML is parsed (~0.25 s at 91k grayordinates): discovery
    keeps the result in the run's :class:`bids_glm.inputs.run_input.RunInput`, the
    geometry and the reader use it from there.

    Raises
    ------
    InputError
        Not a CIFTI-2 file, or its axes are not (series, brain models).
    """
    extensions = read_nifti2_header(path).extensions
    extension = next(e for e in extensions if isinstance(e, Cifti2Extension))
    try:
        matrix = extension.get_content()
        series, brain_models = (matrix.get_axis(i) for i in (0, 1))
    except Exception as err:  # a malformed XML or index map
        raise InputError(f"{path}: not a readable CIFTI-2 file ({err})") from None
    if not isinstance(series, cifti2_axes.SeriesAxis) or not isinstance(
        brain_models, cifti2_axes.BrainModelAxis
    ):
        raise InputError(
            f"{path}: expected the axes (SeriesAxis, BrainModelAxis) of a dense time series, "
            f"found ({type(series).__name__}, {type(brain_models).__name__})"
        )
    factor = SECONDS_PER_UNIT.get(str(series.unit).upper())
    step_s = None if factor is None or series.step <= 0 else float(series.step) * factor
    return CiftiHeader(int(series.size), brain_models, step_s)
