"""Render the participant report (``sub-<label>.html`` + ``.pdf``) from written outputs.

The report reads maps, tables and sidecars (:mod:`bids_glm.report.collect`), builds
each section's view (here: the unit and its runs; :mod:`bids_glm.report.views`: each
contrast, shared with the group report) and fills jinja2 templates with
autoescaping, so text from data files (trial types, column names) is always escaped.
The page is self-contained: inline CSS, figures as ``data:`` URIs, no script.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import jinja2
import numpy as np
from markupsafe import Markup, escape

from bids_glm import __version__
from bids_glm.derivatives import files as derivatives
from bids_glm.derivatives import naming
from bids_glm.report import collect
from bids_glm.report.brain_figures import mask_outline_svg
from bids_glm.report.comparison import comparison_views
from bids_glm.report.figures import (
    contrast_vectors_svg,
    design_correlation_svg,
    design_matrix_svg,
    event_timeline_svg,
    motion_trace_svg,
)
from bids_glm.report.pdf_writer import PdfWriter
from bids_glm.report.single_trial_figures import single_trial_figures
from bids_glm.report.spm12_view import spm12_view
from bids_glm.report.surface_views import (
    SURFACE_MASK,
    surface_contrast_view,
    surface_unit_facts,
)
from bids_glm.report.text_table import text_table
from bids_glm.report.views import (
    NOT_RECORDED,
    Figure,
    ReportOptions,
    contrast_view,
    figure,
    load_volume,
    same_grid,
)

__all__ = [
    "ReportOptions",
    "render_participant_reports",
]

LOGGER = logging.getLogger("bids_glm")
TEMPLATES = Path(__file__).with_name("templates")


_CODE = re.compile(r"`([^`]+)`")


def markdown_blocks(text: str | None) -> list[Markup]:
    """Methods markdown as escaped HTML blocks (headings, paragraphs, list items, code)."""
    if not text:
        return []
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.strip().splitlines()
        if block.startswith("#"):
            level = min(len(block) - len(block.lstrip("#")) + 2, 6)
            body = _CODE.sub(r"<code>\1</code>", str(escape(block.lstrip("#").strip())))
            blocks.append(Markup(f"<h{level}>{body}</h{level}>"))
        elif all(re.match(r"\d+\.\s|[-*]\s", line) for line in lines):
            items = (_CODE.sub(r"<code>\1</code>", str(escape(line))) for line in lines)
            blocks.append(Markup("<ul class='refs'>" + "".join(f"<li>{i}</li>" for i in items)))
            blocks[-1] += Markup("</ul>")
        else:
            body = _CODE.sub(r"<code>\1</code>", str(escape(" ".join(lines))))
            blocks.append(Markup(f"<p>{body}</p>"))
    return blocks


@cache
def environment() -> jinja2.Environment:
    """The report's jinja2 environment (autoescaping on, undefined names are errors); one per
    process, so each template is compiled once (~12 ms for the participant report's)."""
    templates = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    templates.globals["text_table"] = text_table
    return templates


@dataclass(frozen=True)
class ReportDocument:
    """A report's template and everything it shows (figures made once), to be rendered
    for the screen (the HTML file) or for print (the PDF: cluster tables as aligned text,
    which WeasyPrint sets ~10x faster than table cells; `bids_glm.report.text_table`)."""

    template: str
    context: dict

    def html(self, for_print: bool = False) -> str:
        """The document's HTML text (``for_print``: the variant the PDF is made from)."""
        template = environment().get_template(self.template)
        return template.render(**self.context, for_print=for_print)


def write_report(
    document: ReportDocument,
    output_dir: Path,
    participant_label: str | None,
    write_pdf: bool,
    pdfs: PdfWriter | None = None,
) -> list[Path]:
    """Write the HTML atomically and, with ``write_pdf``, the PDF beside it (their names:
    `bids_glm.derivatives.naming.report_path`; no label: the group report).

    The PDF goes to ``pdfs`` (it may be written later, by a child process of the writer);
    without one, it is made here. Returns the paths written by now.
    """
    html_path = naming.report_path(output_dir, participant_label)
    derivatives.write_bytes_atomic(html_path, document.html().encode("utf-8"))
    if not write_pdf:
        return [html_path]
    pdf_path = naming.report_path(output_dir, participant_label, extension=".pdf")
    if pdfs is None:
        with PdfWriter(in_child=False) as here:
            written = here.submit(document.html(for_print=True), pdf_path)
        if here.failures:
            raise here.failures[pdf_path]
    else:
        written = pdfs.submit(document.html(for_print=True), pdf_path)
    return [html_path, pdf_path] if written else [html_path]


def run_view(run: collect.RunRecord, fd_mm: float | None) -> dict:
    """The per-run section: design, correlation, events, motion, contrast vectors."""
    meta = run.metadata
    facts = {
        "Volumes fitted": NOT_RECORDED if run.design is None else str(len(run.design)),
        "Repetition time": f"{run.tr_s:g} s" if run.tr_s else NOT_RECORDED,
        "Dummy scans": str(run.dummy_scans),
        "Censored volumes": ", ".join(map(str, run.censored_volumes)) or "none",
        "HRF model": meta.get("HRFModel", NOT_RECORDED),
        "Noise model": meta.get("NoiseModel", NOT_RECORDED),
        "Confounds": ", ".join(c for cols in (meta.get("Confounds") or {}).values() for c in cols)
        or "none",
        "Sources": ", ".join(meta.get("Sources") or []) or NOT_RECORDED,
    }
    figures = []
    if run.design is not None:
        figures.append(
            figure(
                design_matrix_svg,
                run.design,
                run.censored_rows,
                alt=f"{run.label} design matrix",
                kind="narrow",
            )
        )
        figures.append(figure(design_correlation_svg, run.design, alt=f"{run.label} correlations"))
    if run.events is not None and run.scan_duration_s:
        figures.append(
            figure(
                event_timeline_svg,
                run.events,
                run.scan_duration_s,
                alt=f"{run.label} events",
                kind="wide",
            )
        )
    if run.framewise_displacement_mm is not None and run.tr_s:
        figures.append(
            figure(
                motion_trace_svg,
                run.framewise_displacement_mm,
                run.tr_s,
                run.censored_volumes,
                threshold_mm=fd_mm,
                alt=f"{run.label} framewise displacement",
                kind="wide",
            )
        )
    if run.contrast_weights and run.design is not None:
        figures.append(
            figure(
                contrast_vectors_svg,
                run.contrast_weights,
                list(run.design.columns),
                alt=f"{run.label} contrasts",
            )
        )
    trial_figures, trial_notes = single_trial_figures(run)
    figures += trial_figures
    return {
        "label": run.label,
        "facts": facts,
        "figures": figures,
        "notes": run.notes + trial_notes,
    }


def _user_design_fact(unit) -> dict[str, str]:
    """``{"Design": ...}`` when the design sidecars record user-supplied designs, else {}."""
    files = [r.metadata["UserDesignFile"] for r in unit.runs if r.metadata.get("UserDesignFile")]
    if not files:
        return {}
    names = ", ".join(Path(f).name for f in files)
    return {
        "Design": f"user-supplied (--design-dir: {names}), used as given: no HRF, drift, "
        "confound or constant regressor added"
    }


def _listed(values: Sequence) -> str:
    return ", ".join(str(v) for v in values) if values else NOT_RECORDED


def unit_view(unit: collect.UnitRecord, options: ReportOptions) -> dict:
    """Everything shown for one unit (participant, session, task, space)."""
    spm12 = spm12_view(unit)  # --preset spm12: one multi-session model, no run-level maps
    if spm12 is not None:
        unit = replace(unit, runs=spm12.runs, run_maps=[])
    summary = unit.summary
    mask = load_volume(unit.mask_path)
    underlay = load_volume(unit.mean_path)
    notes = []
    if underlay is None:
        notes.append("mean BOLD image not recorded: the mask is shown as the underlay")
        underlay = mask
    voxel = "x".join(f"{v:g}" for v in mask.voxel_size_mm) + " mm" if mask else NOT_RECORDED
    n_mask = int((mask.data > 0).sum()) if mask else 0
    mask_size = (
        f"{n_mask} voxels ({n_mask * np.prod(mask.voxel_size_mm) / 1000:.1f} mL)"
        if mask
        else NOT_RECORDED
    )
    excluded = [
        f"{r.run} (contrast {r.contrast}): {r.reason}" for r in summary.runs_excluded or ()
    ]
    facts = {
        "Participant": f"sub-{unit.entities.get('sub', '?')}",
        "Session": summary.session or unit.entities.get("ses") or "none",
        "Task": unit.entities.get("task", NOT_RECORDED),
        "Space": unit.entities.get("space", NOT_RECORDED),
        "Runs used": ", ".join(r.label for r in unit.runs) or "none found",
        "Runs excluded": (
            "; ".join(excluded) or "none" if summary.runs_excluded is not None else NOT_RECORDED
        ),
        "Conditions": _listed(summary.conditions),
        "Confounds": _listed(summary.confounds) if summary.confounds else "none",
        **_user_design_fact(unit),
        "Repetition time (s)": _listed(summary.repetition_times_s),
        "Voxel size": voxel,
        "Mask size": mask_size,
        "Warnings": NOT_RECORDED if summary.warnings is None else str(len(summary.warnings)),
    }
    surface = any(m.on_surface for m in (*unit.subject_maps, *unit.run_maps))
    if surface:  # vertices, not voxels: no volume mask or underlay
        notes = [n for n in notes if not n.startswith("mean BOLD image")]
        facts.update(surface_unit_facts(unit))
    fd_mm = summary.fd_threshold_mm
    return {
        "title": unit.title,
        "anchor": unit.anchor,
        "facts": facts,
        "warnings": list(summary.warnings or ()),
        "settings": summary.settings,
        "notes": notes,
        "runs": [run_view(run, fd_mm) for run in unit.runs],
        "spm12": spm12,
        "mask_figure": _mask_figure(unit, mask, underlay, surface),
        "contrasts": _contrast_views(unit, mask, underlay, options, spm12 is not None),
        "comparisons": (
            comparison_views(unit, mask, options)
            if options.run_level and len(unit.runs) > 1 and not surface  # volumes only
            else []
        ),
        "command_line": summary.command_line or NOT_RECORDED,
        "software": summary.software,
        "elapsed_s": summary.elapsed_s,
    }


def _mask_figure(unit, mask, underlay, surface: bool) -> Figure:
    """The mask outline over the underlay, or the note saying why there is none."""
    if mask is not None and same_grid(underlay, mask):
        return figure(
            mask_outline_svg,
            underlay.data,
            mask.data > 0,
            mask.affine,
            alt=f"{unit.title}: mask outline",
            kind="wide",
        )
    note = SURFACE_MASK if surface else "mask or underlay missing: no mask figure"
    return Figure(note=note, kind="wide")


def _contrast_views(unit, mask, underlay, options: ReportOptions, spm12: bool) -> list[dict]:
    """Each subject-level (and, with ``run_level``, run) contrast's section."""
    level = "SPM12 multi-session model" if spm12 else "fixed effects"
    maps = [(m, f"{m.name} ({level})", m.clusters_path) for m in unit.subject_maps]
    if options.run_level:  # the participant level writes no cluster table for a run
        maps += [(m, f"{m.name} ({m.run})", None) for m in unit.run_maps]
    return [
        surface_contrast_view(m, unit.meshes, options, heading, table)
        if m.on_surface
        else contrast_view(m, mask, underlay, options, heading, table)
        for m, heading, table in maps
    ]


def participant_document(
    record: collect.ParticipantRecord, options: ReportOptions
) -> ReportDocument:
    """The participant report: its views (figures drawn, tables read), ready to render."""
    units = [unit_view(unit, options) for unit in record.units]
    context = {
        "participant": record.label,
        "dataset_name": record.dataset.get("Name", NOT_RECORDED),
        "units": units,
        "methods": markdown_blocks(record.methods_markdown),
        "version": __version__,
        "options": options,
        "compare": any(unit["comparisons"] for unit in units),
    }
    return ReportDocument("participant.html.j2", context)


def render_participant_reports(
    output_dir: Path,
    participant_label: str,
    options: ReportOptions,
    pdfs: PdfWriter | None = None,
) -> list[Path]:
    """Render ``sub-<label>.html`` (+ ``.pdf``) from every unit the participant completed.

    Parameters
    ----------
    output_dir : Path
        The participant level's OUTPUT_DIR.
    participant_label : str
        With or without ``sub-``.
    options : ReportOptions
    pdfs : PdfWriter, optional
        Where the PDF is made (with ``options.write_pdf``); here, before returning, if None.

    Returns
    -------
    list of Path
        The files written by now (a PDF queued in ``pdfs`` is not); empty when the
        participant has no completed unit.
    """
    output_dir = Path(output_dir)
    manifests = collect.participant_manifests(output_dir, participant_label)
    if not manifests:
        LOGGER.warning("report: no completed outputs for %s; no report", participant_label)
        return []
    record = collect.read_participant(output_dir, manifests)
    document = participant_document(record, options)
    return write_report(document, output_dir, record.label, options.write_pdf, pdfs)
