"""Render the participant report (``sub-<label>.html`` + ``.pdf``) from written outputs.

The report reads maps, tables and sidecars (:mod:`bids_glm.report.collect`), builds
each section's view (:mod:`bids_glm.report.views`) and fills jinja2 templates with
autoescaping, so text from data files (trial types, column names) is always escaped.
The page is self-contained: inline CSS, figures as ``data:`` URIs, no script.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape

from bids_glm import __version__
from bids_glm.derivatives import files as derivatives
from bids_glm.report import collect
from bids_glm.report.views import NOT_RECORDED, ReportOptions, unit_view

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


def environment() -> jinja2.Environment:
    """The report's jinja2 environment (autoescaping on, undefined names are errors)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def write_report(html: str, html_path: Path, write_pdf: bool) -> list[Path]:
    """Write the HTML (and the PDF next to it) atomically; return the paths written."""
    derivatives.write_bytes_atomic(html_path, html.encode("utf-8"))
    written = [html_path]
    if write_pdf:
        from bids_glm.report.pdf import write_pdf as write_pdf_file

        try:
            written.append(write_pdf_file(html, html_path.with_suffix(".pdf")))
        except (ImportError, OSError) as error:
            LOGGER.warning("report: no PDF for %s (%s)", html_path.name, error)
    return written


def render_participant(record: collect.ParticipantRecord, options: ReportOptions) -> str:
    """The participant report's HTML text."""
    units = [unit_view(unit, options) for unit in record.units]
    return (
        environment()
        .get_template("participant.html.j2")
        .render(
            participant=record.label,
            dataset_name=record.dataset.get("Name", NOT_RECORDED),
            units=units,
            methods=markdown_blocks(record.methods_markdown),
            version=__version__,
            options=options,
        )
    )


def render_participant_reports(
    output_dir: Path, participant_label: str, options: ReportOptions
) -> list[Path]:
    """Render ``sub-<label>.html`` (+ ``.pdf``) from every unit the participant completed.

    Parameters
    ----------
    output_dir : Path
        The participant level's OUTPUT_DIR.
    participant_label : str
        With or without ``sub-``.
    options : ReportOptions

    Returns
    -------
    list of Path
        The files written; empty when the participant has no completed unit.
    """
    output_dir = Path(output_dir)
    manifests = collect.participant_manifests(output_dir, participant_label)
    if not manifests:
        LOGGER.warning("report: no completed outputs for %s; no report", participant_label)
        return []
    record = collect.read_participant(output_dir, manifests)
    html = render_participant(record, options)
    return write_report(html, output_dir / f"sub-{record.label}.html", options.write_pdf)
