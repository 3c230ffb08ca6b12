"""Checking a BIDS Stats Model document: :func:`parse_model` (files: ``load.load_model``).

Two passes over the JSON document. The first names the first feature bids-glm does not run
(:mod:`bids_glm.inputs.smdl.unsupported`), since fixing anything else would not make such a
model run. The second checks the structure field by field against BIDS Stats Models 1.0.0.

Defaults follow the specification: Edges absent connect the nodes in the order listed;
``Model.Type`` absent is ``glm`` (as pybids); ``DummyContrasts.Contrasts`` absent means every
variable of ``Model.X``; Weights may be fractions written as text (``"-1/3"``). bids-glm
settings without a specification field (noise model, smoothing, confound strategy, ...) are
accepted in the Run node's ``Model.Options`` under the names
``bids_glm/derivatives/stats_model.py`` writes, and ``Model.HRF`` accepts that writer's
``TimeDerivative`` / ``DispersionDerivative`` flags and ``Parameters.Delays``, so the
effective model bids-glm writes loads back.
"""

from __future__ import annotations

import itertools
from typing import Any

from bids_glm.design.hrf_spec import HRF_MODELS, hrf_model_text, parse_hrf_model
from bids_glm.inputs.smdl.model import (
    HRF,
    INTERCEPT,
    LEVELS,
    TESTS,
    Contrast,
    DummyContrasts,
    Edge,
    JsonChecker,
    Node,
    StatsModel,
)
from bids_glm.inputs.smdl.unsupported import refuse_unsupported

SPEC_OPTIONS = ("Description", "HighPassFilterCutoffHz")
BIDS_GLM_OPTIONS = (
    "NoiseModel",
    "SignalScaling",
    "SmoothingFWHMmm",
    "DriftModel",
    "DriftOrder",
    "DummyScans",
    "FixedEffects",
    "MaskCombine",
    "SliceTimeRef",
    "Confounds",
)
_NODE_FIELDS = (
    "Level",
    "Name",
    "GroupBy",
    "Model",
    "Transformations",
    "Contrasts",
    "DummyContrasts",
    "Description",
)


def parse_model(document: Any, source: str = "model") -> StatsModel:
    """Check a loaded JSON document in two passes (see the module docstring) and build the model.

    Parameters
    ----------
    document : object
        The parsed JSON.
    source : str
        Names the document in messages (its file, as a rule).

    Returns
    -------
    StatsModel

    Raises
    ------
    ModelError
        A malformed field (with its JSON path) or a feature bids-glm does not support (named).
    """
    check = JsonChecker(source)
    refuse_unsupported(document, check)
    check.fields(
        document,
        "",
        required=("Name", "BIDSModelVersion", "Nodes"),
        optional=("Description", "Input", "Edges"),
    )
    version = check.string(document["BIDSModelVersion"], "BIDSModelVersion")
    if not version.startswith("1.0"):
        check.fail("BIDSModelVersion", f"expected 1.0.0, got {version!r}")
    nodes = tuple(
        _node(item, f"Nodes[{i}]", check)
        for i, item in enumerate(check.array(document["Nodes"], "Nodes", min_items=1))
    )
    names = [node.name for node in nodes]
    for i, name in enumerate(names):
        if name in names[:i]:
            check.fail(f"Nodes[{i}].Name", f"node name {name!r} is used twice")
    edges = _edges(document.get("Edges"), names, check)
    return StatsModel(
        name=check.string(document["Name"], "Name"),
        version=version,
        description=check.string(document.get("Description", ""), "Description"),
        input=_filter(document.get("Input", {}), "Input", check),
        nodes=nodes,
        edges=edges,
        source=source,
    )


def _node(value, path: str, check: JsonChecker) -> Node:
    check.fields(
        value, path, required=("Level", "Name", "GroupBy", "Model"), optional=_NODE_FIELDS
    )
    level = check.string(value["Level"], f"{path}.Level").capitalize()
    if level not in LEVELS:
        check.fail(f"{path}.Level", f"expected one of {', '.join(LEVELS)}, got {value['Level']!r}")
    model = check.fields(
        value["Model"],
        f"{path}.Model",
        required=("X",),
        optional=("Type", "HRF", "Options", "Software", "Description"),
    )
    x = check.variables(model["X"], f"{path}.Model.X", min_items=1)
    node_type = check.string(model.get("Type", "glm"), f"{path}.Model.Type")
    if node_type not in ("glm", "meta"):
        check.fail(f"{path}.Model.Type", f"expected 'glm' or 'meta', got {node_type!r}")
    if level == "Subject" and x != (INTERCEPT,):
        check.fail(
            f"{path}.Model.X",
            "a Subject node combines each subject's runs by fixed "
            f"effects and must model only the intercept [1]; got {list(x)}",
        )
    if level != "Run" and ("HRF" in model or "Transformations" in value):
        key = "Model.HRF" if "HRF" in model else "Transformations"
        check.fail(f"{path}.{key}", f"only a Run node may have {key}")
    name = check.string(value["Name"], f"{path}.Name")
    transformations = _transformations(value.get("Transformations"), path, check)
    return Node(
        level=level,
        name=name,
        group_by=check.strings(value["GroupBy"], f"{path}.GroupBy"),
        x=x,
        type=node_type,
        hrf=_hrf(model["HRF"], f"{path}.Model.HRF", check) if "HRF" in model else None,
        options=_options(model.get("Options", {}), f"{path}.Model.Options", level, check),
        contrasts=_contrasts(value.get("Contrasts", []), f"{path}.Contrasts", check),
        dummy_contrasts=_dummy(value.get("DummyContrasts"), f"{path}.DummyContrasts", check),
        transformations=transformations,
        software=_software(model.get("Software", {}), f"{path}.Model.Software", check),
        origin=f"{check.source}: {path}",
    )


def _hrf(value, path: str, check: JsonChecker) -> HRF:
    hrf = check.fields(
        value,
        path,
        required=("Variables", "Model"),
        optional=("Parameters", "Description", "TimeDerivative", "DispersionDerivative"),
    )
    name = hrf_model_text(
        check.string(hrf["Model"], f"{path}.Model"),
        time_derivative=hrf.get("TimeDerivative") is True,
        dispersion_derivative=hrf.get("DispersionDerivative") is True,
    )
    try:
        model = parse_hrf_model(name)
    except ValueError:
        check.fail(
            f"{path}.Model",
            f"HRF model {hrf['Model']!r} is not supported; "
            f"expected one of: {', '.join(HRF_MODELS)}",
        )
    parameters = check.fields(
        hrf.get("Parameters", {}),
        f"{path}.Parameters",
        optional=("Delays", "fir_delays", "FirDelays"),
    )
    delays = next(
        (parameters[k] for k in ("Delays", "fir_delays", "FirDelays") if k in parameters), None
    )
    if model.base == "fir" and delays is None:
        check.fail(f"{path}.Parameters", "the 'fir' model needs Parameters.Delays (in scans)")
    return HRF(
        variables=check.strings(hrf["Variables"], f"{path}.Variables"),
        model=model,
        fir_delays_scans=None
        if delays is None
        else _fir_delays(delays, f"{path}.Parameters", check),
    )


def _fir_delays(value, path: str, check: JsonChecker) -> tuple[int, ...]:
    """FIR delays in scans: distinct integers >= 0."""
    delays = check.array(value, path, min_items=1)
    if not all(type(d) is int and d >= 0 for d in delays) or len(set(delays)) < len(delays):
        check.fail(path, f"expected distinct integer delays >= 0 (in scans), got {delays!r}")
    return tuple(delays)


def _options(value, path: str, level: str, check: JsonChecker) -> dict:
    known = SPEC_OPTIONS + BIDS_GLM_OPTIONS if level == "Run" else ("Description",)
    options = check.fields(value, path, optional=known)
    if "HighPassFilterCutoffHz" in options:
        cutoff = check.number(options["HighPassFilterCutoffHz"], f"{path}.HighPassFilterCutoffHz")
        if cutoff <= 0:
            check.fail(f"{path}.HighPassFilterCutoffHz", f"expected a frequency > 0, got {cutoff}")
    return dict(options)


def _contrasts(value, path: str, check: JsonChecker) -> tuple[Contrast, ...]:
    contrasts = []
    for i, item in enumerate(check.array(value, path)):
        where = f"{path}[{i}]"
        check.fields(
            item,
            where,
            required=("Name", "ConditionList", "Weights", "Test"),
            optional=("Description",),
        )
        name = check.string(item["Name"], f"{where}.Name")
        if name in [c.name for c in contrasts]:
            check.fail(f"{where}.Name", f"contrast name {name!r} is used twice in this node")
        conditions = check.variables(item["ConditionList"], f"{where}.ConditionList", 1)
        test = _test(item["Test"], f"{where}.Test", check)
        weights = _weights(item["Weights"], f"{where}.Weights", len(conditions), test, check)
        contrasts.append(Contrast(name, conditions, weights, test))
    return tuple(contrasts)


def _test(value, path: str, check: JsonChecker) -> str:
    if value not in TESTS:
        check.fail(path, f"expected 't', 'F' or 'pass', got {value!r}")
    return value


def _weights(value, path, n_conditions, test, check) -> tuple[tuple[float, ...], ...]:
    items = check.array(value, path, min_items=1)
    two_d = all(isinstance(row, list) for row in items)
    if two_d and test != "F":
        check.fail(path, f"a {test!r} contrast takes a 1-D list of weights, got {len(items)} rows")
    rows = items if two_d else [items]
    for r, row in enumerate(rows):
        where = f"{path}[{r}]" if two_d else path
        if len(row) != n_conditions:
            check.fail(where, f"{len(row)} weights for {n_conditions} ConditionList entries")
    return tuple(
        tuple(
            check.number(w, f"{path}[{r}][{i}]" if two_d else f"{path}[{i}]")
            for i, w in enumerate(row)
        )
        for r, row in enumerate(rows)
    )


def _dummy(value, path: str, check: JsonChecker) -> DummyContrasts | None:
    if value is None:
        return None
    check.fields(value, path, required=("Test",), optional=("Contrasts", "Description"))
    conditions = value.get("Contrasts")
    return DummyContrasts(
        conditions=None
        if conditions is None
        else check.variables(conditions, f"{path}.Contrasts"),
        test=_test(value["Test"], f"{path}.Test", check),
    )


def _transformations(value, path: str, check: JsonChecker) -> tuple[dict, ...]:
    from bids_glm.inputs.smdl.transformations import convolution, instruction_arguments

    if value is None:
        return ()
    where = f"{path}.Transformations"
    if isinstance(value, list):
        check.fail(
            where,
            "expected an object with Transformer and Instructions "
            "(a bare list of instructions is the pre-1.0 form)",
        )
    check.fields(value, where, required=("Transformer", "Instructions"), optional=("Description",))
    instructions = check.array(value["Instructions"], f"{where}.Instructions")
    convolving = False
    for k, item in enumerate(instructions):
        at = f"{where}.Instructions[{k}]"
        check.fields(item, at, required=("Name", "Input"), optional=tuple(item))
        name = check.string(item["Name"], f"{at}.Name")
        check.fields(item, at, optional=("Name", "Input", *instruction_arguments(name)))
        if name == "Convolve":
            convolving = True
            try:
                convolution(item)
            except ValueError as err:
                check.fail(f"{at}.{err.args[0]}", err.args[1])
            if "FirDelays" in item:
                _fir_delays(item["FirDelays"], f"{at}.FirDelays", check)
        elif convolving:
            check.fail(
                f"{at}.Name",
                f"{name} after Convolve is not supported: bids-glm "
                "convolves while building the design, so Convolve comes last",
            )
    return tuple(instructions)


def _software(value, path: str, check: JsonChecker) -> dict:
    """``Software``: an object of objects (spec) or a list of one-key objects (bids-glm 0.1)."""
    items = [value] if isinstance(value, dict) else check.array(value, path)
    software: dict = {}
    for i, item in enumerate(items):
        where = path if isinstance(value, dict) else f"{path}[{i}]"
        for key, settings in check.fields(item, where, optional=tuple(item)).items():
            software[key] = check.fields(settings, f"{where}.{key}", optional=tuple(settings))
    return software


def _filter(value, path: str, check: JsonChecker) -> dict[str, tuple]:
    check.fields(value, path, optional=tuple(value) if isinstance(value, dict) else ())
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in value.items()}


def _edges(value, names: list[str], check: JsonChecker) -> tuple[Edge, ...]:
    if value is None:
        return tuple(Edge(a, b, {}) for a, b in itertools.pairwise(names))
    edges = []
    for i, item in enumerate(check.array(value, "Edges")):
        path = f"Edges[{i}]"
        check.fields(
            item, path, required=("Source", "Destination"), optional=("Filter", "Description")
        )
        ends = [check.string(item[key], f"{path}.{key}") for key in ("Source", "Destination")]
        for key, end in zip(("Source", "Destination"), ends, strict=True):
            if end not in names:
                check.fail(f"{path}.{key}", f"no node named {end!r}; nodes: {', '.join(names)}")
        edges.append(Edge(*ends, _filter(item.get("Filter", {}), f"{path}.Filter", check)))
    return tuple(edges)
