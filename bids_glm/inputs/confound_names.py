"""fMRIPrep's confound column names across its versions (see `confound_presets`).

fMRIPrep 1.0 - 1.1 wrote CamelCase names (``RotX``, ``aCompCor00``); later versions the
snake_case ones (``rot_x``, ``a_comp_cor_00``). These functions map one to the other without
reading any file, so parsing ``--confounds`` needs neither pandas nor a confounds TSV.
"""

from __future__ import annotations

import re

LEGACY_NAMES = {
    "X": "trans_x",
    "Y": "trans_y",
    "Z": "trans_z",
    "RotX": "rot_x",
    "RotY": "rot_y",
    "RotZ": "rot_z",
    "FramewiseDisplacement": "framewise_displacement",
    "stdDVARS": "std_dvars",
    "GlobalSignal": "global_signal",
    "WhiteMatter": "white_matter",
    "CSF": "csf",
}
_LEGACY_NUMBERED = {
    "aCompCor": "a_comp_cor_",
    "tCompCor": "t_comp_cor_",
    "Cosine": "cosine",
    "NonSteadyStateOutlier": "non_steady_state_outlier",
}
_LEGACY_NUMBERED_RE = re.compile(rf"({'|'.join(_LEGACY_NUMBERED)})(\d+)")


def canonical_name(column: str) -> str:
    """The current fMRIPrep spelling of ``column`` (``RotX`` -> ``rot_x``); others unchanged."""
    if column in LEGACY_NAMES:
        return LEGACY_NAMES[column]
    match = _LEGACY_NUMBERED_RE.fullmatch(column)
    return _LEGACY_NUMBERED[match[1]] + match[2] if match else column


def is_legacy_name(column: str) -> bool:
    """Whether ``column`` is an fMRIPrep 1.0 - 1.1 (CamelCase) confound name."""
    return canonical_name(column) != column


def legacy_spelling(name: str) -> str | None:
    """The fMRIPrep 1.0 - 1.1 spelling of a current un-numbered name (``rot_x`` -> ``RotX``)."""
    return next((old for old, new in LEGACY_NAMES.items() if new == name), None)
