"""BIDS Stats Models (BIDSModelVersion 1.0.0) as frozen dataclasses, and the JSON checks.

:func:`bids_glm.inputs.smdl.load.load_model` reads a file and checks the document against
:mod:`bids_glm.inputs.smdl.schema` (the rules and the features refused); every failure is
a :class:`ModelError` whose message names the file, the JSON path of the field and what was
expected, e.g. ``model.json: Nodes[0].Contrasts[1].Weights: 3 weights for 2 ConditionList
entries``. :func:`bids_glm.inputs.smdl.graph.node_graph` orders the nodes for execution.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from bids_glm.design.hrf_spec import HrfSpec
from bids_glm.errors import InputError

INTERCEPT = 1
LEVELS = ("Run", "Subject", "Dataset")
TESTS = ("t", "F", "pass")


class ModelError(InputError):
    """A BIDS Stats Model that is malformed or asks for what bids-glm does not support."""


@dataclass(frozen=True)
class Contrast:
    """One contrast: weights (always 2-D: one row for t) over named conditions."""

    name: str
    condition_list: tuple[str | int, ...]
    weights: tuple[tuple[float, ...], ...]
    test: str


@dataclass(frozen=True)
class DummyContrasts:
    """One contrast per listed variable (``None``: every variable of X but the intercept)."""

    conditions: tuple[str | int, ...] | None
    test: str


@dataclass(frozen=True)
class HRF:
    """``Model.HRF``: which variables are convolved and with which bids-glm HRF model."""

    variables: tuple[str, ...]
    model: HrfSpec
    fir_delays_scans: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Node:
    """One node of the model; ``origin`` (``"file: Nodes[i]"``) prefixes error messages."""

    level: str
    name: str
    group_by: tuple[str, ...]
    x: tuple[str | int, ...]
    type: str
    hrf: HRF | None
    options: Mapping[str, Any]
    contrasts: tuple[Contrast, ...]
    dummy_contrasts: DummyContrasts | None
    transformations: tuple[Mapping[str, Any], ...]
    software: Mapping[str, Mapping[str, Any]]
    origin: str

    @property
    def intercept(self) -> bool:
        """Whether X holds the intercept ``1``."""
        return INTERCEPT in self.x


@dataclass(frozen=True)
class Edge:
    """Outputs of ``source`` flow to ``destination``, filtered by entity values."""

    source: str
    destination: str
    filter: Mapping[str, tuple]


@dataclass(frozen=True)
class StatsModel:
    """A validated BIDS Stats Model."""

    name: str
    version: str
    description: str
    input: Mapping[str, tuple]
    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    source: str

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        return next(node for node in self.nodes if node.name == name)


class JsonChecker:
    """Type checks of JSON values that raise a :class:`ModelError` naming the file and path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str):
        raise ModelError(
            f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}"
        )

    def fields(self, value, path, required=(), optional=()) -> dict:
        if not isinstance(value, dict):
            self.fail(path, f"expected a JSON object, got {_kind(value)}")
        for key in required:
            if key not in value:
                self.fail(_join(path, key), "required field missing")
        for key in value:
            if key not in (*required, *optional):
                known = ", ".join((*required, *optional))
                self.fail(_join(path, key), f"unknown field; expected one of: {known}")
        return value

    def string(self, value, path) -> str:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_kind(value)}")
        return value

    def array(self, value, path, min_items: int = 0) -> list:
        if not isinstance(value, list):
            self.fail(path, f"expected a JSON array, got {_kind(value)}")
        if len(value) < min_items:
            self.fail(path, f"expected at least {min_items} item(s), got none")
        return value

    def strings(self, value, path) -> tuple[str, ...]:
        return tuple(self.string(v, f"{path}[{i}]") for i, v in enumerate(self.array(value, path)))

    def variables(self, value, path, min_items: int = 0) -> tuple[str | int, ...]:
        items = self.array(value, path, min_items)
        for i, item in enumerate(items):
            if not (isinstance(item, str) or (item == INTERCEPT and type(item) is int)):
                self.fail(f"{path}[{i}]", f"expected a variable name or 1, got {item!r}")
        return tuple(items)

    def number(self, value, path) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            self.fail(path, f"expected a number, got {_kind(value)}")
        try:
            return float(Fraction(value.strip()) if isinstance(value, str) else value)
        except (ValueError, ZeroDivisionError):
            self.fail(path, f'expected a number or a fraction such as "-1/3", got {value!r}')


def _kind(value) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    return "null" if value is None else names.get(type(value), f"the number {value!r}")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
