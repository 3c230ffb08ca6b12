"""Execution order of a model's nodes and the contrasts each edge passes on.

bids-glm runs one Run node (one GLM per run, whatever its GroupBy), Subject nodes (fixed
effects over each subject's runs, whether Type is ``meta`` or ``glm`` with X = [1]) and
Dataset nodes (OLS over subjects). Contrasts with Test ``t`` or ``pass`` flow along edges; F
contrasts are terminal (BIDS Stats Models 1.0.0). At a node grouped by ``contrast`` with an
intercept, the intercept's dummy contrast keeps the incoming contrast's name and an explicit
contrast ``N`` becomes ``<incoming>_N`` (as pybids names them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from bids_glm.errors import InputError
from bids_glm.inputs.smdl.model import INTERCEPT, LEVELS, Edge, JsonChecker, Node, StatsModel

LOGGER = logging.getLogger("bids_glm")


@dataclass(frozen=True)
class GraphStep:
    """One node in execution order, with what flows into it.

    Attributes
    ----------
    node : Node
    source : str or None
        The node whose outputs it receives (None for the Run node).
    contrasts_in : tuple of str or None
        Names of the source's t/pass contrasts that pass the edge's ``contrast`` filter;
        None for the Run node, or when X wildcards make them known only once runs are read.
    entity_filter : mapping of str to tuple
        The edge's other filter entries (entity -> accepted values).
    combine_runs : bool
        A Dataset node fed by the Run node: each subject's runs are first combined by
        fixed effects (the implicit Subject node).
    design : str
        ``"run"``, ``"fixed_effects"`` (Subject), ``"one_sample"`` (X = [1]), ``"covariates"``
        (1 and participants.tsv columns) or ``"contrast_indicators"`` (X names incoming
        contrasts: one indicator column per contrast, all contrasts in one model).
    contrasts_out : tuple of str or None
        The t/pass contrasts it passes on (F contrasts are terminal), None when not known.
    """

    node: Node
    source: str | None
    contrasts_in: tuple[str, ...] | None
    entity_filter: Mapping[str, tuple]
    combine_runs: bool
    design: str
    contrasts_out: tuple[str, ...] | None


def _run_outputs(node: Node) -> tuple[str, ...] | None:
    dummy = node.dummy_contrasts
    names: list = []
    if dummy is not None and dummy.test != "F":
        listed = dummy.conditions or [v for v in node.x if v != INTERCEPT]
        if any(isinstance(v, str) and set(v) & set("*?[") for v in listed):
            return None
        names += ["intercept" if v == INTERCEPT else v for v in listed]
    return tuple(names + [c.name for c in node.contrasts if c.test != "F"])


def _group_outputs(node: Node, incoming: tuple[str, ...] | None, design: str):
    explicit = [c.name for c in node.contrasts if c.test != "F"]
    dummy = node.dummy_contrasts
    dummies = [] if dummy is None or dummy.test == "F" else list(dummy.conditions or node.x)
    if design == "contrast_indicators":
        return tuple(str(v) for v in dummies if v != INTERCEPT) + tuple(explicit)
    if incoming is None:
        return None
    named = [f"_{v}" for v in dummies if v != INTERCEPT] + [f"_{n}" for n in explicit]
    return tuple(
        name
        for c in incoming
        for name in ([c] if INTERCEPT in dummies else []) + [c + n for n in named]
    )


def node_graph(model: StatsModel) -> list[GraphStep]:
    """Execution order of the nodes and the contrasts each edge passes on.

    Raises
    ------
    ModelError
        Not exactly one Run node at the root, a node fed by several edges or by a node of the
        same or a higher level, a node not reachable from the root, a filter naming a contrast
        its source does not produce, or a Dataset design bids-glm cannot fit.
    """
    check = JsonChecker(model.source)
    rank = {level: i for i, level in enumerate(LEVELS)}
    runs = [n for n in model.nodes if n.level == "Run"]
    if len(runs) != 1:
        check.fail("Nodes", f"expected exactly one Run node, got {len(runs)}")
    parents: dict[str, tuple[int, Edge]] = {}
    for i, edge in enumerate(model.edges):
        where = f"Edges[{i}]" if model.edges else "Edges"
        source, target = model.node(edge.source), model.node(edge.destination)
        if edge.destination in parents:
            check.fail(where, f"node {target.name!r} is fed by more than one edge")
        if rank[source.level] >= rank[target.level]:
            check.fail(where, f"a {source.level} node cannot feed a {target.level} node")
        parents[edge.destination] = (i, edge)
    steps = {runs[0].name: GraphStep(runs[0], None, None, {}, False, "run", _run_outputs(runs[0]))}
    pending = [n for n in model.nodes if n.name not in steps]
    while pending:
        ready = [n for n in pending if n.name in parents and parents[n.name][1].source in steps]
        if not ready:
            check.fail(
                "Edges",
                f"node(s) {', '.join(n.name for n in pending)} not reachable "
                f"from the Run node {runs[0].name!r}",
            )
        for node in ready:
            steps[node.name] = _step(node, *parents[node.name], steps, check)
        pending = [n for n in pending if n.name not in steps]
    return list(steps.values())


def _step(node: Node, index: int, edge: Edge, steps: dict, check: JsonChecker) -> GraphStep:
    parent = steps[edge.source]
    wanted = edge.filter.get("contrast")
    incoming = parent.contrasts_out
    if wanted is not None and incoming is not None:
        unknown = [c for c in wanted if c not in incoming]
        if unknown:
            check.fail(
                f"Edges[{index}].Filter.contrast",
                f"{unknown} not among the contrasts of node {edge.source!r}: {list(incoming)}",
            )
        incoming = tuple(c for c in incoming if c in wanted)
    elif wanted is not None:
        incoming = tuple(wanted)
    by_contrast = "contrast" in node.group_by
    covariates = [v for v in node.x if v != INTERCEPT]
    if node.level == "Subject":
        design = "fixed_effects"
    elif covariates and incoming is not None and set(covariates) <= set(incoming):
        design = "contrast_indicators"
    else:
        design = "covariates" if covariates else "one_sample"
    if (design == "contrast_indicators") == by_contrast:
        check.fail(
            f"{node.origin.split(': ', 1)[1]}.GroupBy",
            "GroupBy must hold 'contrast' unless X names the incoming contrasts "
            f"(design {design!r}, GroupBy {list(node.group_by)})",
        )
    return GraphStep(
        node=node,
        source=edge.source,
        contrasts_in=incoming,
        entity_filter={k: v for k, v in edge.filter.items() if k != "contrast"},
        combine_runs=parent.node.level == "Run" and node.level == "Dataset",
        design=design,
        contrasts_out=_group_outputs(node, incoming, design),
    )


def dataset_contrasts(model: StatsModel) -> frozenset[str] | None:
    """The contrasts the model's Dataset nodes test, as bids-glm runs them (one-sample t).

    Dataset nodes of another design are not run, and edge filters on entities other than
    ``contrast`` are not applied; both are logged as warnings.

    Parameters
    ----------
    model : StatsModel
        A validated ``--model``.

    Returns
    -------
    frozenset of str or None
        Names of the contrasts to test at the group level; None when a Dataset node takes
        every incoming contrast and their names are known only once runs are read.

    Raises
    ------
    InputError
        No Dataset node bids-glm can run.
    """
    names: set[str] = set()
    for step in node_graph(model):
        if step.node.level != "Dataset":
            continue
        if step.design != "one_sample":
            LOGGER.warning(
                "--model: Dataset node %s (%s design) not run: bids-glm fits one-sample t "
                "tests at the dataset level",
                step.node.name,
                step.design.replace("_", " "),
            )
            continue
        if step.entity_filter:
            LOGGER.warning(
                "--model: Dataset node %s: edge filter on %s not applied (bids-glm filters "
                "edges by contrast only)",
                step.node.name,
                ", ".join(step.entity_filter),
            )
        if step.contrasts_in is None:
            return None
        names.update(step.contrasts_in)
    if not names:
        raise InputError(
            f"--model {model.source}: no Dataset node bids-glm can run "
            "(a one-sample t test, X = [1])"
        )
    return frozenset(names)
