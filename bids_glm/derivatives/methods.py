"""The methods text: ``OUTPUT_DIR/logs/CITATION.{md,html,tex,bib}``.

The prose lives in the jinja2 templates of the top-level ``boilerplate/`` folder (shipped in
the wheel as the ``bids_glm.boilerplate`` package): ``methods_text.j2`` holds one macro per
paragraph, and ``methods.md.j2``, ``methods.html.j2`` and ``methods.tex.j2`` lay them out in
their format. Values from settings and data (condition and contrast names, the command line)
are escaped for each format: HTML by jinja2's autoescape, Markdown and LaTeX by an output
filter that escapes every value not already marked safe. References come from
``boilerplate/references.bib``; a template cites them with ``cite(key, ...)``, so the reference
list and ``CITATION.bib`` hold exactly the works the text cites, in order of first citation.
The text has no dates or timestamps: the same facts give the same bytes.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import jinja2

from bids_glm import __version__
from bids_glm.derivatives.bibliography import Reference, read_references
from bids_glm.derivatives.files import write_bytes_atomic
from bids_glm.derivatives.methods_markup import (
    FORMATS,
    Citations,
    count_text,
    number_text,
    voxel_size_text,
)
from bids_glm.derivatives.naming import citation_path
from bids_glm.derivatives.template_code import HandedBackCode, start_compiling
from bids_glm.image.mask_rule import INTERSECTION, MaskRule
from bids_glm.inputs.variants import VARIANT_ENTITIES, is_cifti_space, is_surface_space
from bids_glm.settings import ModelSettings, Settings, Spm12Settings

DEPENDENCIES = ("pybids", "nibabel", "numpy", "scipy", "pandas")
AR1_BIN_WIDTH = 0.01  # 1 / n_bins of bids_glm.glm.fit.fit_glm, whose default the pipeline uses
_TEMPLATES = {"md": "methods.md.j2", "html": "methods.html.j2", "tex": "methods.tex.j2"}
_SHARED_TEMPLATE = "methods_text.j2"  # the macros every format's template imports


@dataclass(frozen=True)
class MethodsFacts:
    """Everything the methods text states, as plain data.

    Attributes
    ----------
    software_version : str
        bids-glm version.
    dependency_versions : mapping of str to str
        Version of each of :data:`DEPENDENCIES`.
    n_participants : int
        Participants analysed.
    tasks : tuple of str
        Tasks analysed.
    n_runs : int
        Runs fitted, over all participants.
    space : str or None
        Space of the preprocessed BOLD series (None: not stated by the derivatives).
    bold_variant : tuple of str
        Which of the space's preprocessed series were analysed: their ``desc``, ``res`` and
        ``den`` entities (e.g. ``desc-preproc``, ``res-2``), over all runs.
    voxel_sizes_mm : tuple of tuple of float
        The distinct voxel sizes (x, y, z) of the analysed grids (empty: surfaces).
    tr_s : tuple of float
        The distinct repetition times of the runs, in seconds.
    model : ModelSettings
        The first-level model.
    command_line : str
        The command that produced the outputs.
    conditions : tuple of str
        Condition names found in the events files (empty: not listed in the text).
    mask_rule : MaskRule
        How the runs' brain masks were combined (``Settings.mask_combine``).
    user_mask : str or None
        File name of a user-supplied analysis mask (it replaces the brain masks).
    single_trial : str or None
        ``"lsa"`` or ``"lss"`` when trial-wise estimates were written.
    single_trial_conditions : tuple of str
        Conditions whose trials were estimated (empty: all).
    single_trial_t : bool
        Whether their t statistics were written too.
    spm12 : Spm12Settings or None
        ``--preset spm12``: the text describes SPM12's multi-session model instead.
    """

    software_version: str
    dependency_versions: Mapping[str, str]
    n_participants: int
    tasks: tuple[str, ...]
    n_runs: int
    space: str | None
    tr_s: tuple[float, ...]
    model: ModelSettings
    command_line: str
    conditions: tuple[str, ...] = ()
    bold_variant: tuple[str, ...] = ()
    voxel_sizes_mm: tuple[tuple[float, ...], ...] = ()
    mask_rule: MaskRule = INTERSECTION
    user_mask: str | None = None
    single_trial: str | None = None
    single_trial_conditions: tuple[str, ...] = ()
    single_trial_t: bool = False
    spm12: Spm12Settings | None = None

    def __post_init__(self) -> None:
        missing = [name for name in DEPENDENCIES if name not in self.dependency_versions]
        if missing:
            raise ValueError(f"dependency_versions: expected {DEPENDENCIES}; missing {missing}")
        if self.n_participants < 1 or self.n_runs < 1:
            raise ValueError(
                "expected at least one participant and one run; received "
                f"n_participants={self.n_participants}, n_runs={self.n_runs}"
            )
        if not self.tr_s or min(self.tr_s) <= 0:
            raise ValueError(f"tr_s: expected positive repetition times; received {self.tr_s}")

    @property
    def surface(self) -> bool:
        """Whether the data are surfaces (GIfTI per hemisphere): no brain mask applies."""
        return is_surface_space(self.space)

    @property
    def cifti(self) -> bool:
        """Whether the data are CIFTI-2 grayordinates (fsLR): no brain mask applies."""
        return is_cifti_space(self.space)

    @property
    def location(self) -> str:
        """What a fitted time series belongs to: ``voxel``, ``vertex`` or ``grayordinate``."""
        return "grayordinate" if self.cifti else "vertex" if self.surface else "voxel"


def methods_facts(
    settings: Settings,
    n_participants: int,
    tasks: Iterable[str],
    n_runs: int,
    space: str | None,
    tr_s: Iterable[float],
    command_line: str,
    conditions: Iterable[str] = (),
    bold_variant: Iterable[str] = (),
    voxel_sizes_mm: Iterable[Sequence[float]] = (),
) -> MethodsFacts:
    """Gather the facts of one invocation, with the installed dependency versions.

    Parameters
    ----------
    settings : Settings
        The validated settings of the run.
    n_participants, n_runs : int
        Participants and runs analysed.
    tasks : iterable of str
        Tasks analysed (duplicates are dropped, the rest sorted).
    space : str or None
        Space of the preprocessed BOLD series.
    tr_s : iterable of float
        Repetition times of the runs (duplicates dropped, the rest sorted).
    command_line : str
        The command as the user typed it.
    conditions : iterable of str, optional
        Condition names of the events files (duplicates dropped, the rest sorted).
    bold_variant : iterable of str, optional
        ``desc``/``res``/``den`` entities of the analysed series (duplicates dropped, the
        rest in the order ``desc``, ``res``, ``den``).
    voxel_sizes_mm : iterable of sequences of float, optional
        Voxel sizes of the analysed grids (duplicates dropped).

    Returns
    -------
    MethodsFacts
    """
    return MethodsFacts(
        software_version=__version__,
        dependency_versions={name: _installed_version(name) for name in DEPENDENCIES},
        n_participants=int(n_participants),
        tasks=tuple(sorted(set(tasks))),
        n_runs=int(n_runs),
        space=space,
        tr_s=tuple(sorted({float(t) for t in tr_s})),
        model=settings.model,
        command_line=command_line,
        conditions=tuple(sorted(set(conditions))),
        bold_variant=tuple(sorted(set(bold_variant), key=_variant_order)),
        voxel_sizes_mm=tuple(
            sorted({tuple(round(float(v), 4) for v in size) for size in voxel_sizes_mm})
        ),
        mask_rule=settings.mask_combine,
        user_mask=settings.mask.name if settings.mask is not None else None,
        single_trial=settings.single_trial,
        single_trial_conditions=settings.single_trial_conditions,
        single_trial_t="t" in settings.single_trial_maps,
        spm12=settings.spm12,
    )


def _variant_order(entity: str) -> tuple[int, str]:
    """``desc-*`` first, then the grid (``res-*``, ``den-*``), as `bold_variant` lists them."""
    key = entity.split("-", 1)[0]
    rank = VARIANT_ENTITIES.index(key) if key in VARIANT_ENTITIES else len(VARIANT_ENTITIES)
    return rank, entity


def _installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def _template_source(name: str) -> str:
    """A file of the boilerplate folder: the installed package, else the source checkout."""
    try:
        root = resources.files("bids_glm.boilerplate")
    except ModuleNotFoundError:  # running from a source tree (package not built)
        root = Path(__file__).resolve().parents[2] / "boilerplate"  # bids_glm/derivatives/..
    return root.joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _environment(fmt: str) -> jinja2.Environment:
    """The jinja2 environment of one format (templates compiled once per process)."""
    style, autoescape = FORMATS[fmt], fmt == "html"
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(lambda name: (_template_source(name), None, lambda: True)),
        bytecode_cache=HandedBackCode(fmt),
        autoescape=autoescape,
        finalize=None if autoescape else style.escape,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.do"],
        keep_trailing_newline=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        code=style.code,
        paragraph=style.paragraph,
        and_join=style.and_join,
        link=style.link,
        num=number_text,
        voxel_size=voxel_size_text,
    )
    env.globals.update(count=count_text, code=style.code, phrase=style.phrase)
    return env


def compile_templates() -> None:
    """Start compiling every format's templates (~0.2 s, holding the GIL) elsewhere.

    In a forked child where that is safe (`bids_glm.derivatives.template_code`), else in a
    thread: the compilation then overlaps the start of the fit rather than delaying it;
    rendering uses what was compiled, or compiles what was not: the same text either way.
    """
    start_compiling(_compile_all)


def _compile_all() -> None:
    for fmt, name in _TEMPLATES.items():
        for template in (name, _SHARED_TEMPLATE):
            _environment(fmt).get_template(template)


def _hrf_facts(model: ModelSettings) -> dict:
    spec = model.hrf_model
    return {
        "basis": "canonical" if spec.canonical else spec.base,
        "family": spec.base,
        "time_derivative": spec.time_derivative,
        "dispersion_derivative": spec.dispersion_derivative,
    }


def _mask_fraction(rule: MaskRule) -> float | None:
    return rule.fraction if rule.kind == "fraction" else None


def _render(fmt: str, facts: MethodsFacts, library: Mapping[str, Reference]) -> tuple[str, list]:
    style = FORMATS[fmt]
    citations = Citations(library, style)
    text = (
        _environment(fmt)
        .get_template(_TEMPLATES[fmt])
        .render(
            facts=facts,
            m=facts.model,
            hrf=_hrf_facts(facts.model),
            mask_fraction=_mask_fraction(facts.mask_rule),
            ar1_bin_width=AR1_BIN_WIDTH,
            cite=citations.cite,
            cited=lambda: list(citations.cited),
        )
    )
    return text, citations.cited


def render_methods(facts: MethodsFacts) -> dict[str, str]:
    """Render the methods text in every format.

    Parameters
    ----------
    facts : MethodsFacts

    Returns
    -------
    dict of str to str
        Text by format: ``{"md": ..., "html": ..., "tex": ..., "bib": ...}``; the ``bib``
        holds the ``references.bib`` entries the text cites, in citation order.
    """
    library = read_references(_template_source("references.bib"))
    rendered = {fmt: _render(fmt, facts, library) for fmt in _TEMPLATES}
    documents = {fmt: text for fmt, (text, _) in rendered.items()}
    cited = rendered["md"][1]  # every format cites the same works in the same order
    documents["bib"] = "\n\n".join(ref.bibtex for ref in cited) + "\n"
    return documents


def write_methods(output_dir: Path, facts: MethodsFacts) -> None:
    """Write ``OUTPUT_DIR/logs/CITATION.{md,html,tex,bib}`` atomically (UTF-8).

    Parameters
    ----------
    output_dir : Path
        The derivatives folder.
    facts : MethodsFacts
    """
    for fmt, text in render_methods(facts).items():
        write_bytes_atomic(citation_path(output_dir, fmt), text.encode("utf-8"))
