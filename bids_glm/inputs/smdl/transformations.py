"""Apply a Run node's ``pybids-transforms-v1`` instructions to one run's variables.

The run's events (one sparse variable per column but ``onset`` and ``duration``, as pybids
reads an ``events.tsv``) and confounds (one dense variable per column, sampled at 1/TR) become
a pybids run variable collection, and pybids' own ``bids.modeling.transformations`` run on it,
one instruction at a time so that a failure names the instruction.

``Convolve`` is not executed: bids-glm convolves while building the design matrix (so the HRF
numerics are those of ``bids_glm.design``). The models loader only accepts Convolve as the last
instruction(s); here its inputs are expanded and recorded with their bids-glm HRF model.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

import numpy as np
import pandas as pd

from bids_glm.design.hrf_spec import HRF_MODELS, HrfSpec, hrf_model_text, parse_hrf_model

EVENT_TIMING_COLUMNS = ("onset", "duration")
_BASE_ARGUMENTS = ("output", "output_prefix", "output_suffix", "dense", "groupby", "description")


@dataclass(frozen=True)
class TransformedRun:
    """One run's variables after the transformations.

    Attributes
    ----------
    sparse : dict of str to DataFrame
        Event variables: columns ``onset``, ``duration`` (s) and ``amplitude`` (numeric, or
        text for a categorical variable such as an unfactored ``trial_type``).
    dense : dict of str to ndarray
        Dense variables sampled once per scan, shape (n_scans,).
    convolved : dict of str to HrfSpec
        Variables named by Convolve instructions -> bids-glm HRF model.
    fir_delays_scans : tuple of int or None
        FIR delays of a Convolve with the ``fir`` model.
    """

    sparse: dict[str, pd.DataFrame]
    dense: dict[str, np.ndarray]
    convolved: dict[str, HrfSpec]
    fir_delays_scans: tuple[int, ...] | None = None


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def _pybids_transformation(name: str):
    from bids.modeling import transformations

    return getattr(transformations, name + ("_" if name in ("And", "Or") else ""))


def instruction_arguments(name: str) -> tuple[str, ...]:
    """The CamelCase arguments (besides Name and Input) of the named pybids transformation."""
    method = _pybids_transformation(name)._transform
    own = list(inspect.signature(method).parameters)[2:]
    return tuple(_camel(a) for a in (*own, *_BASE_ARGUMENTS))


def convolution(instruction: Mapping) -> tuple[HrfSpec, tuple[int, ...] | None]:
    """A Convolve instruction's bids-glm HRF model and FIR delays (scans).

    Raises
    ------
    ValueError
        With ``(field, message)`` as arguments: an unknown model or missing FIR delays.
    """
    model = instruction.get("Model", "spm")
    if str(model).lower() not in ("spm", "glover", "fir"):
        raise ValueError("Model", f"expected 'spm', 'glover' or 'fir', got {model!r}")
    name = hrf_model_text(
        str(model),
        time_derivative=instruction.get("Derivative") is True,
        dispersion_derivative=instruction.get("Dispersion") is True,
    )
    try:
        hrf_model = parse_hrf_model(name)
    except ValueError:
        raise ValueError(
            "Model", f"{name!r} is not supported; expected one of {HRF_MODELS}"
        ) from None
    delays = instruction.get("FirDelays")
    if hrf_model.base == "fir" and delays is None:
        raise ValueError("FirDelays", "the 'fir' model needs FirDelays (in scans)")
    return hrf_model, None if delays is None else tuple(delays)


def _run_info(tr_s: float, n_scans: int):
    """pybids run information whose dense grid at 1/TR has exactly ``n_scans`` samples."""
    from bids.variables.entities import RunInfo

    duration = n_scans * tr_s
    while math.ceil(duration * (1.0 / tr_s)) > n_scans:
        duration = math.nextafter(duration, 0.0)
    return RunInfo({}, duration, tr_s, None, n_scans)


def _event_amplitudes(values: pd.Series) -> pd.Series:
    """Numbers when every non-missing value is one, else text (a categorical variable)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if (numeric.notna() | values.isna()).all():
        return numeric.astype(float)
    return values.astype(object)


def run_collection(events: pd.DataFrame | None, confounds: pd.DataFrame | None, tr_s, n_scans):
    """A pybids ``BIDSRunVariableCollection`` of one run's events and confounds.

    Parameters
    ----------
    events : DataFrame or None
        ``onset``, ``duration`` and any other columns (text or numbers, n/a as missing).
    confounds : DataFrame or None
        One row per scan.
    tr_s : float
        Repetition time.
    n_scans : int
        Scans of the run (the design's rows).
    """
    from bids.variables import BIDSRunVariableCollection, DenseRunVariable, SparseRunVariable

    info = _run_info(tr_s, n_scans)
    variables = []
    if events is not None and len(events):
        timing = events[list(EVENT_TIMING_COLUMNS)].apply(pd.to_numeric, errors="coerce")
        keep = timing["onset"].notna().to_numpy()
        timing = timing[keep].assign(duration=lambda t: t["duration"].fillna(0.0).clip(0.0))
        for column in events.columns.drop(list(EVENT_TIMING_COLUMNS)):
            data = timing.assign(amplitude=_event_amplitudes(events[column][keep]))
            variables.append(
                SparseRunVariable(str(column), data.reset_index(drop=True), info, "events")
            )
    if confounds is not None:
        if len(confounds) != n_scans:
            raise ValueError(f"confounds have {len(confounds)} rows for {n_scans} scans")
        for column in confounds.columns:
            values = pd.to_numeric(confounds[column], errors="coerce").to_numpy(dtype=float)
            variables.append(DenseRunVariable(str(column), values, info, "regressors", 1 / tr_s))
    return BIDSRunVariableCollection(variables) if variables else None


def apply_instructions(
    instructions: Sequence[Mapping],
    events: pd.DataFrame | None,
    confounds: pd.DataFrame | None,
    tr_s: float,
    n_scans: int,
    origin: str = "Run node",
) -> TransformedRun:
    """Run the instructions with pybids (Convolve recorded, not run) on one run's variables.

    Parameters
    ----------
    instructions : sequence of mapping
        A validated node's ``Transformations.Instructions``.
    events, confounds, tr_s, n_scans
        As for :func:`run_collection`.
    origin : str
        Prefix of error messages (``"model.json: Nodes[0]"``).

    Returns
    -------
    TransformedRun

    Raises
    ------
    ValueError
        An instruction fails (message names it and pybids' reason), or Convolve names a
        variable that does not exist or is dense.
    """
    from bids.modeling.transformations import TransformerManager

    collection = run_collection(events, confounds, tr_s, n_scans)
    manager = TransformerManager(keep_history=False)
    convolved: dict[str, HrfSpec] = {}
    fir = None
    for k, instruction in enumerate(instructions):
        where = f"{origin}.Transformations.Instructions[{k}] ({instruction['Name']})"
        if collection is None:
            raise ValueError(f"{where}: the run has neither events nor confounds")
        if instruction["Name"] == "Convolve":
            hrf_model, fir = convolution(instruction)
            for name in _convolve_targets(collection, instruction, where):
                convolved[name] = hrf_model
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                manager.transform(collection, [dict(instruction)])
        except (ValueError, KeyError, TypeError, IndexError) as err:
            raise ValueError(f"{where}: {err}") from None
    return _plain(collection, tr_s, n_scans, convolved, fir)


def _convolve_targets(collection, instruction: Mapping, where: str) -> list[str]:
    """Variables a Convolve names (wildcards expanded; Output copies them under new names)."""
    from bids.variables import SparseRunVariable

    patterns = (
        instruction["Input"] if isinstance(instruction["Input"], list) else [instruction["Input"]]
    )
    names: list[str] = []
    for pattern in patterns:
        found = [v for v in collection.variables if fnmatchcase(v, pattern)]
        if not found:
            raise ValueError(f"{where}: Input {pattern!r} matches no variable")
        names += found
    outputs = instruction.get("Output")
    if outputs is not None:
        outputs = outputs if isinstance(outputs, list) else [outputs]
        if len(outputs) != len(names):
            raise ValueError(f"{where}: {len(outputs)} Output names for {len(names)} inputs")
        for source, target in zip(names, outputs, strict=True):
            collection.variables[target] = collection.variables[source].clone(name=target)
        names = list(outputs)
    dense = [n for n in names if not isinstance(collection.variables[n], SparseRunVariable)]
    if dense:
        raise ValueError(
            f"{where}: {', '.join(dense)} dense (sampled) variable(s): bids-glm convolves "
            "events (onset, duration, amplitude) only"
        )
    return names


def _plain(collection, tr_s: float, n_scans: int, convolved, fir) -> TransformedRun:
    from bids.variables import SparseRunVariable

    sparse, dense = {}, {}
    for name, variable in ({} if collection is None else collection.variables).items():
        if isinstance(variable, SparseRunVariable):
            values = variable.values
            if isinstance(values, pd.DataFrame):  # Orthogonalize returns a one-column frame
                values = values.iloc[:, 0]
            sparse[name] = pd.DataFrame(
                {
                    "onset": np.asarray(variable.onset, dtype=float),
                    "duration": np.asarray(variable.duration, dtype=float),
                    "amplitude": values.to_numpy(),
                }
            )
            continue
        if not math.isclose(variable.sampling_rate, 1 / tr_s) or len(variable.values) != n_scans:
            variable = variable.resample("TR")
        dense[name] = variable.values.to_numpy(dtype=float).ravel()[:n_scans]
    return TransformedRun(sparse, dense, convolved, fir)
