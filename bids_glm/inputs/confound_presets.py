"""The columns each confound preset selects, in every fMRIPrep naming generation.

Naming generations handled (the column a preset looks for, in every spelling; mapped by
:mod:`bids_glm.inputs.confound_names`):

============================  ===============================================================
fMRIPrep 1.0 - 1.1            CamelCase, ``*_bold_confounds.tsv``, no JSON sidecar, no
                              derivative or power columns: ``X Y Z RotX RotY RotZ``,
                              ``FramewiseDisplacement``, ``stdDVARS``, ``GlobalSignal``,
                              ``WhiteMatter``, ``CSF``, ``aCompCor00``, ``tCompCor00``,
                              ``Cosine00``, ``NonSteadyStateOutlier00``
fMRIPrep 1.2 - 20.2           snake_case (``desc-confounds_regressors.tsv``, renamed
                              ``desc-confounds_timeseries.tsv`` in 20.2): ``trans_x``,
                              ``rot_x``, ``*_derivative1``, ``*_power2``,
                              ``*_derivative1_power2``; ``a_comp_cor_NN`` holds the CSF, WM and
                              combined-mask components, told apart by the sidecar's ``Mask``
fMRIPrep 21 onward            as above, but ``a_comp_cor_NN`` is the combined mask only
                              (CSF and WM components are ``c_comp_cor_NN`` / ``w_comp_cor_NN``)
============================  ===============================================================

Presets and the columns they select, in this order:

- ``motion6``: ``trans_x trans_y trans_z rot_x rot_y rot_z``.
- ``motion24``: for each of the six, the parameter, ``_derivative1``, ``_power2`` and
  ``_derivative1_power2``. Columns an older fMRIPrep did not write are computed from the
  parameter as fMRIPrep does: backward difference ``x[t] - x[t-1]`` (n/a at t = 0) and squares;
  computed columns are named ``<file column>_<suffix>``.
- ``wm_csf``: ``white_matter csf``.
- ``global_signal``: ``global_signal``.
- ``acompcor``: with CompCor metadata in the sidecar, the ``a_comp_cor_NN`` components of the
  ``combined`` (WM + CSF) mask, in order of ``CumulativeVarianceExplained``, up to and including
  the first that reaches 50 % (fewer when the file holds fewer). Without that metadata (no
  sidecar, fMRIPrep 1.0 - 1.1): the first five ``a_comp_cor_NN``; for fMRIPrep 1.2 - 20.2 files
  these are CSF-mask components, so a warning says so.
- ``cosine``: fMRIPrep's ``cosineNN`` columns (its discrete cosine high-pass basis).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm.inputs.confound_names import canonical_name, is_legacy_name, legacy_spelling
from bids_glm.inputs.confound_strategy import PRESETS, ConfoundError
from bids_glm.inputs.events import NA_VALUES

LOGGER = logging.getLogger("bids_glm")

MOTION_PARAMETERS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
EXPANSION_SUFFIXES = ("derivative1", "power2", "derivative1_power2")
ACOMPCOR_VARIANCE = 0.5
ACOMPCOR_FALLBACK_COUNT = 5


def column_index(columns: Iterable[str]) -> dict[str, str]:
    """Map current fMRIPrep names to the file's own columns (current spelling preferred)."""
    columns = list(columns)
    index = {canonical_name(c): c for c in columns if is_legacy_name(c)}
    index.update({c: c for c in columns if not is_legacy_name(c)})
    return index


def numbered_columns(index: Mapping[str, str], stem: str) -> list[str]:
    """Canonical names ``<stem><digits>`` present in ``index``, by component number."""
    pattern = re.compile(rf"{re.escape(stem)}(\d+)")
    found = [(int(m[1]), name) for name in index if (m := pattern.fullmatch(name))]
    return [name for _, name in sorted(found)]


def numeric_column(table: pd.DataFrame, column: str, path: Path) -> pd.Series:
    """``table[column]`` as float (BIDS n/a -> NaN); other non-numbers are a ``ConfoundError``."""
    raw = table[column].mask(table[column].isin(NA_VALUES))
    values = pd.to_numeric(raw, errors="coerce").astype(float)
    bad = values.isna() & raw.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ConfoundError(
            f"{path}: column {column!r} row {row + 1} holds {raw.iloc[row]!r}; "
            "expected a number or n/a"
        )
    return values.rename(column).reset_index(drop=True)


def missing_columns_error(path: Path, source: str, names: Iterable[str], columns) -> ConfoundError:
    """The error for a preset or rule whose columns are absent from the file."""
    names = list(names)
    spellings = [legacy_spelling(name) for name in names]
    wanted = ", ".join(f"{n} (or {o})" if o else n for n, o in zip(names, spellings, strict=True))
    return ConfoundError(
        f"{path}: {source} needs column(s) {wanted}, not in the file; "
        f"columns present: {', '.join(map(str, columns))}"
    )


def require(index: Mapping[str, str], names, source: str, path: Path, columns) -> list[str]:
    """The file's columns for canonical ``names``; ``ConfoundError`` naming any missing."""
    absent = [n for n in names if n not in index]
    if absent:
        raise missing_columns_error(path, source, absent, columns)
    return [index[n] for n in names]


def _motion24(table: pd.DataFrame, index: Mapping[str, str], path: Path) -> pd.DataFrame:
    """The six parameters with derivatives and squares, computing any the file lacks."""
    bases = require(index, MOTION_PARAMETERS, "preset 'motion24'", path, table.columns)
    chosen: dict[str, pd.Series] = {}
    for canonical, column in zip(MOTION_PARAMETERS, bases, strict=True):
        base = numeric_column(table, column, path)
        derivative = base.diff()
        computed = {
            "derivative1": derivative,
            "power2": base**2,
            "derivative1_power2": derivative**2,
        }
        chosen[column] = base
        for suffix in EXPANSION_SUFFIXES:
            in_file = index.get(f"{canonical}_{suffix}")
            if in_file is None:
                chosen[f"{column}_{suffix}"] = computed[suffix]
            else:
                chosen[in_file] = numeric_column(table, in_file, path)
    return pd.DataFrame(chosen)


def _combined_acompcor(sidecar: Mapping | None, path: Path) -> list[tuple[float, str]]:
    """(cumulative variance, name) of the sidecar's combined-mask aCompCor components."""
    if not sidecar:
        return []
    components = []
    for name, meta in sidecar.items():
        if not (isinstance(meta, Mapping) and str(name).startswith("a_comp_cor_")):
            continue
        if str(meta.get("Method", "")).lower() != "acompcor":
            continue
        if str(meta.get("Mask", "")).lower() != "combined":
            continue
        cumulative = meta.get("CumulativeVarianceExplained")
        if not isinstance(cumulative, (int, float)):
            raise ConfoundError(
                f"{path.with_suffix('.json')}: {name} has no numeric "
                f"CumulativeVarianceExplained (got {cumulative!r})"
            )
        components.append((float(cumulative), str(name)))
    return sorted(components)


def _acompcor(index: Mapping[str, str], sidecar: Mapping | None, path: Path, columns) -> list[str]:
    """Combined-mask components reaching 50 % variance, else the first five (see module doc)."""
    components = [(c, n) for c, n in _combined_acompcor(sidecar, path) if n in index]
    if components:
        cumulative = np.array([c for c, _ in components])
        n_kept = int(np.searchsorted(cumulative, ACOMPCOR_VARIANCE, side="left")) + 1
        return [index[n] for _, n in components[:n_kept]]
    names = numbered_columns(index, "a_comp_cor_")[:ACOMPCOR_FALLBACK_COUNT]
    if not names:
        raise missing_columns_error(path, "preset 'acompcor'", ["a_comp_cor_NN"], columns)
    if not is_legacy_name(index[names[0]]):
        LOGGER.warning(
            "%s: no combined-mask CompCor metadata in a JSON sidecar; preset 'acompcor' uses "
            "the first %d a_comp_cor columns (CSF-mask components before fMRIPrep 21)",
            path.name,
            len(names),
        )
    return [index[n] for n in names]


def preset_columns(
    preset: str, table: pd.DataFrame, sidecar: Mapping | None, path: Path
) -> pd.DataFrame:
    """The regressors a preset selects from a confounds table, as float with n/a as NaN.

    Parameters
    ----------
    preset : str
        One of ``PRESETS``.
    table : DataFrame
        The confounds file's content (any fMRIPrep naming generation).
    sidecar : mapping or None
        The file's JSON sidecar (CompCor metadata), if any.
    path : Path
        The confounds file, for messages.

    Returns
    -------
    DataFrame
        One column per selected regressor, in the preset's documented order, named as in the
        file (computed motion expansions: ``<column>_<suffix>``).

    Raises
    ------
    ConfoundError
        A column the preset needs is absent or holds something other than numbers.
    """
    index = column_index(table.columns)
    source = f"preset {preset!r}"
    if preset == "motion24":
        return _motion24(table, index, path)
    if preset == "motion6":
        names = require(index, MOTION_PARAMETERS, source, path, table.columns)
    elif preset == "wm_csf":
        names = require(index, ("white_matter", "csf"), source, path, table.columns)
    elif preset == "global_signal":
        names = require(index, ("global_signal",), source, path, table.columns)
    elif preset == "acompcor":
        names = _acompcor(index, sidecar, path, table.columns)
    elif preset == "cosine":
        names = [index[n] for n in numbered_columns(index, "cosine")]
        if not names:
            raise missing_columns_error(path, source, ["cosineNN"], table.columns)
    else:
        raise ConfoundError(f"unknown confound preset {preset!r}; presets: {', '.join(PRESETS)}")
    return pd.DataFrame({n: numeric_column(table, n, path) for n in names})
