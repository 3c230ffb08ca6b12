"""Map a BIDS Stats Model's Run node onto one run's design inputs (pure, no files).

Variables of a run: one per events column (pybids' reading) and one per confounds column,
then the node's transformations (:mod:`bids_glm.inputs.smdl.transformations`). Two conventions
found in published models are resolved too, when no variable has the name:

- ``<column>.<level>`` for a level of a text (categorical) events column that was not
  factored, e.g. ``trial_type.listening`` (bids-matlab's convention; amplitude 1, as pybids'
  Factor gives);
- a bare level of ``trial_type``, e.g. ``congruent`` in the specification's examples and the
  conditions of bids-glm's own effective model (amplitude: the ``modulation`` column when the
  events have one, else 1, as bids-glm builds conditions).

X entries are matched with shell wildcards (``trial_type.*``, ``a_comp_cor_??``, ``rot_?``)
in the run's variables. Event variables become conditions for ``make_design_matrix`` (one
HRF for all: ``Model.HRF`` or the Convolve instructions; when the model names no HRF at all,
the ``default_hrf_model``, since an unconvolved boxcar regressor is almost never meant). Dense
variables become confounds, unconvolved, in X order. The design always keeps its ``constant``
column (cosine drifts assume it); ``intercept`` records whether X asked for ``1``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd

from bids_glm.design.contrast_options import ContrastSpec, FContrastSpec
from bids_glm.design.hrf import basis_suffixes
from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.inputs.smdl.model import INTERCEPT, Contrast, ModelError, Node
from bids_glm.inputs.smdl.options import expression, node_overrides
from bids_glm.inputs.smdl.transformations import TransformedRun, apply_instructions
from bids_glm.settings import ModelSettings

LOGGER = logging.getLogger("bids_glm")
CONDITION_COLUMN = "trial_type"
AMPLITUDE_COLUMN = "modulation"


@dataclass(frozen=True)
class RunModelInputs:
    """What ``make_design_matrix`` and the contrasts need for one run.

    Attributes
    ----------
    events : DataFrame
        ``onset``, ``duration``, ``trial_type`` (the X variable), ``modulation`` (amplitude).
    confounds : DataFrame or None
        Dense X variables, unconvolved, in X order (n_scans rows).
    hrf_model, fir_delays_scans
        bids-glm HRF model of the conditions and FIR delays (``"fir"`` only).
    high_pass_hz : float
        ``Options.HighPassFilterCutoffHz``, else the default given.
    intercept : bool
        Whether X holds ``1``.
    conditions, confound_columns : tuple of str
        X variables modelled as conditions / as confounds.
    contrasts : tuple of ContrastSpec
        Dummy contrasts, then the explicit t (and ``pass``) contrasts, weights over columns.
    f_contrasts : tuple of FContrastSpec
    """

    events: pd.DataFrame
    confounds: pd.DataFrame | None
    hrf_model: HrfSpec
    fir_delays_scans: tuple[int, ...] | None
    high_pass_hz: float
    intercept: bool
    conditions: tuple[str, ...]
    confound_columns: tuple[str, ...]
    contrasts: tuple[ContrastSpec, ...]
    f_contrasts: tuple[FContrastSpec, ...]


def map_run_node(
    node: Node,
    events: pd.DataFrame | None,
    confounds: pd.DataFrame | None,
    tr_s: float,
    n_scans: int,
    *,
    default_hrf_model: HrfSpec = ModelSettings.hrf_model,
    default_high_pass_hz: float = ModelSettings.high_pass_hz,
) -> RunModelInputs:
    """Resolve a Run node on one run's variables.

    Parameters
    ----------
    node : Node
        A validated Run node.
    events : DataFrame or None
        The run's events with every column (``read_events`` output, onsets on the fitted
        timeline), or None.
    confounds : DataFrame or None
        The run's confounds, one row per scan.
    tr_s : float
        Repetition time in seconds.
    n_scans : int
        Scans of the design.
    default_hrf_model : HrfSpec
        HRF of event variables when the model names none (``--hrf-model``).
    default_high_pass_hz : float
        Cut-off when Options has no ``HighPassFilterCutoffHz``: bids-glm's ``--high-pass``
        default, 0.01 Hz (nilearn's, a 100 s period), so a model without the option gives
        the design a run without ``--model`` would have.

    Returns
    -------
    RunModelInputs

    Raises
    ------
    ModelError
        A transformation fails, an X entry matches nothing, an event variable is outside the
        HRF's Variables, a dense variable is to be convolved, or a contrast names a column
        the design does not have (each message names the JSON path).
    """
    try:
        run = apply_instructions(
            node.transformations, events, confounds, tr_s, n_scans, node.origin
        )
    except ValueError as err:
        raise ModelError(str(err)) from None
    sparse = {**_implicit_variables(run), **run.sparse}
    hrf_model, fir_delays, named = _convolution(node, run, default_hrf_model)
    x_names = _expand(node.x, [*run.dense, *sparse], f"{node.origin}.Model.X", sparse)
    conditions = [v for v in x_names if v in sparse]
    confound_columns = [v for v in x_names if v in run.dense]
    _check_convolution(node, conditions, confound_columns, named)
    design_columns = _design_columns(conditions, confound_columns, hrf_model, fir_delays)
    contrasts, f_contrasts = _contrasts(node, x_names, design_columns)
    model, _ = node_overrides(node)  # validated Options: the high-pass cut-off
    return RunModelInputs(
        events=_events(conditions, sparse, node.origin),
        confounds=_confounds(confound_columns, run.dense, n_scans, node.origin),
        hrf_model=hrf_model,
        fir_delays_scans=fir_delays,
        high_pass_hz=model.get("high_pass_hz", default_high_pass_hz),
        intercept=node.intercept,
        conditions=tuple(conditions),
        confound_columns=tuple(confound_columns),
        contrasts=contrasts,
        f_contrasts=f_contrasts,
    )


def _implicit_variables(run: TransformedRun) -> dict[str, pd.DataFrame]:
    """``column.level`` indicators of unfactored text columns, and bare trial_type levels."""
    implicit: dict[str, pd.DataFrame] = {}
    for name, table in run.sparse.items():
        if pd.api.types.is_numeric_dtype(table["amplitude"]):
            continue
        labels = table["amplitude"]
        for level in sorted(labels.dropna().astype(str).unique()):
            indicator = (labels.astype(str) == level) & labels.notna()
            implicit[f"{name}.{level}"] = table.assign(amplitude=indicator.astype(float))
            if name == CONDITION_COLUMN:
                implicit.setdefault(level, _level_events(table, indicator, run))
    return implicit


def _level_events(table: pd.DataFrame, selected: pd.Series, run: TransformedRun):
    modulation = run.sparse.get(AMPLITUDE_COLUMN)
    if modulation is None or len(modulation) != len(table):
        amplitude = np.ones(len(table))
    else:
        amplitude = pd.to_numeric(modulation["amplitude"], errors="coerce").to_numpy()
    return table.assign(amplitude=amplitude)[selected.to_numpy()].reset_index(drop=True)


def _expand(entries: Sequence, names: Sequence[str], path: str, sparse) -> list:
    """X entries (or a dummy contrast list) with wildcards matched against ``names``."""
    expanded: list = []
    for i, entry in enumerate(entries):
        if entry == INTERCEPT:
            matches = [INTERCEPT]
        elif set(entry) & set("*?["):
            matches = [n for n in names if fnmatchcase(n, entry)]
        else:
            matches = [entry] if entry in names else []
        if not matches:
            shown = ", ".join(sorted(n for n in names if "." not in n or n in sparse)[:40])
            raise ModelError(
                f"{path}[{i}]: {entry!r} matches no variable of this run; variables: {shown}"
            )
        expanded += [m for m in matches if m not in expanded]
    return expanded


def _convolution(node: Node, run: TransformedRun, default: str):
    """The one HRF model, FIR delays and the variables the model names for convolution."""
    models = set(run.convolved.values())
    named = set(run.convolved)
    fir = run.fir_delays_scans
    if node.hrf is not None:
        models.add(node.hrf.model)
        named |= set(node.hrf.variables)
        fir = node.hrf.fir_delays_scans or fir
    if len(models) > 1:
        raise ModelError(
            f"{node.origin}: one HRF model per run is supported; the model names "
            f"{sorted(map(str, models))} (Model.HRF and Convolve)"
        )
    return (models.pop() if models else default), fir, named


def _check_convolution(node: Node, conditions, confound_columns, named: set) -> None:
    dense = sorted(named & set(confound_columns))
    if dense:
        raise ModelError(
            f"{node.origin}: {dense} are dense (sampled) variables; bids-glm "
            "convolves events (onset, duration, amplitude) only"
        )
    plain = [c for c in conditions if named and c not in named]
    if plain:
        raise ModelError(
            f"{node.origin}.Model.X: event variable(s) {plain} are not in "
            "Model.HRF.Variables nor a Convolve Input; unconvolved or differently "
            "convolved event regressors are not supported"
        )
    if node.hrf is not None:
        absent = [v for v in node.hrf.variables if v not in conditions]
        if absent:
            raise ModelError(
                f"{node.origin}.Model.HRF.Variables: {absent} not among the "
                f"event variables of Model.X {conditions}"
            )


def _design_columns(conditions, confound_columns, hrf_model, fir_delays) -> dict[str, list]:
    """Each nameable column -> the design columns its weight goes to."""
    suffixes = basis_suffixes(hrf_model, fir_delays)
    columns: dict[str, list] = {INTERCEPT: ["constant"]}
    for condition in conditions:
        basis = [condition + suffix for suffix in suffixes]
        columns[condition] = [condition] if "" in suffixes else basis
        columns.update({name: [name] for name in basis})
    columns.update({name: [name] for name in confound_columns})
    return columns


def _weights(contrast: Contrast, path: str, columns: Mapping) -> list[dict[str, float]]:
    for j, condition in enumerate(contrast.condition_list):
        if condition not in columns:
            raise ModelError(
                f"{path}.ConditionList[{j}]: {condition!r} is not a column of the "
                f"design; columns: {[c for c in columns if c != INTERCEPT]}"
            )
    rows = []
    for row in contrast.weights:
        weights: dict[str, float] = {}
        for condition, weight in zip(contrast.condition_list, row, strict=True):
            for column in columns[condition]:
                weights[column] = weights.get(column, 0.0) + weight
        rows.append({c: w for c, w in weights.items() if w != 0})
    return rows


def _contrasts(node: Node, x_names: list, columns: Mapping):
    dummy_names: list = []
    if node.dummy_contrasts is not None:
        listed = node.dummy_contrasts.conditions or [v for v in x_names if v != INTERCEPT]
        path = f"{node.origin}.DummyContrasts.Contrasts"
        dummy_names = _expand(listed, [v for v in x_names if v != INTERCEPT], path, {})
    dummies = [
        Contrast("intercept" if v == INTERCEPT else v, (v,), ((1.0,),), node.dummy_contrasts.test)
        for v in dummy_names
    ]
    for k, contrast in enumerate(node.contrasts):
        if contrast.name in [d.name for d in dummies]:
            raise ModelError(
                f"{node.origin}.Contrasts[{k}].Name: {contrast.name!r} is also a "
                "DummyContrasts name"
            )
    t_specs, f_specs = [], []
    paths = [f"{node.origin}.DummyContrasts"] * len(dummies)
    paths += [f"{node.origin}.Contrasts[{k}]" for k in range(len(node.contrasts))]
    for contrast, path in zip([*dummies, *node.contrasts], paths, strict=True):
        rows = _weights(contrast, path, columns)
        if contrast.test == "F":
            text = "; ".join(expression(row) for row in rows)
            f_specs.append(FContrastSpec(contrast.name, text, tuple(rows)))
        else:
            t_specs.append(ContrastSpec(contrast.name, expression(rows[0]), rows[0]))
    return tuple(t_specs), tuple(f_specs)


def _events(conditions: Sequence[str], sparse: Mapping, origin: str) -> pd.DataFrame:
    blocks = [
        sparse[c].rename(columns={"amplitude": "modulation"}).assign(trial_type=c)
        for c in conditions
    ]
    if not blocks:
        return pd.DataFrame(columns=["onset", "duration", "trial_type", "modulation"])
    table = pd.concat(blocks, ignore_index=True)[["onset", "duration", "trial_type", "modulation"]]
    table["modulation"] = pd.to_numeric(table["modulation"], errors="coerce")
    missing = table["modulation"].isna()
    if missing.any():
        LOGGER.warning(
            "%s: %d event(s) with n/a amplitude left out (variables %s)",
            origin,
            missing.sum(),
            sorted(set(table.loc[missing, "trial_type"])),
        )
    return table.loc[~missing].reset_index(drop=True)


def _confounds(columns: Sequence[str], dense: Mapping, n_scans: int, origin: str):
    if not columns:
        return None
    table = pd.DataFrame({c: dense[c] for c in columns})
    empty = [c for c in columns if table[c].isna().all()]
    if empty:
        raise ModelError(f"{origin}.Model.X: confound column(s) {empty} hold only n/a")
    filled = [c for c in columns if table[c].isna().any()]
    if filled:
        LOGGER.warning("%s: n/a values of %s replaced by the column mean", origin, filled)
    return table.fillna(table.mean())
