"""Render the HTML (and PDF) reports once a level's outputs are written.

A report that cannot be rendered is reported as a failure of its own: the statistical
outputs it describes are complete and stay in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence

from bids_glm.derivatives import manifest, naming
from bids_glm.errors import InputError
from bids_glm.pipeline import batch
from bids_glm.pipeline.units import AnalysisUnit, unit_fingerprint
from bids_glm.settings import Settings

LOGGER = logging.getLogger("bids_glm")


def report_options(settings: Settings):
    """The report settings of the command line as ``report.views.ReportOptions``."""
    from bids_glm.report.views import ReportOptions

    return ReportOptions(
        height_control=settings.height_control,
        alpha=settings.alpha,
        cluster_extent=settings.cluster_extent,
        write_pdf=settings.write_pdf,
        run_level=settings.report_run_maps,
    )


def participants_with_outputs(settings: Settings) -> list[str]:
    """Participants (requested ones, or all) that have complete outputs in OUTPUT_DIR."""
    found = sorted({s.participant for s in manifest.completed_summaries(settings.output_dir)})
    if settings.participant_labels:
        return [label for label in settings.participant_labels if label in found]
    return found


def render_participant_reports(
    settings: Settings, participant_labels: Iterable[str]
) -> list[batch.UnitResult]:
    """Write ``sub-<label>.html`` (+ ``.pdf``) for each participant; failures as results.

    The PDFs are made in child processes (`bids_glm.report.pdf_writer`; one per core, at
    most 3) while the next participant's report is drawn here.
    """
    from bids_glm.report.pdf_writer import PdfWriter
    from bids_glm.report.render import render_participant_reports as render

    options = report_options(settings)
    results: dict[str, batch.UnitResult] = {}
    labels = list(participant_labels)
    # this process mostly waits for the PDFs (drawing a report takes half a PDF's time)
    in_child = options.write_pdf and settings.n_cpus > 1
    with PdfWriter(in_child, n_children=min(settings.n_cpus, len(labels))) as pdfs:
        for label in labels:
            name = f"sub-{label} report"
            started = time.perf_counter()
            try:
                written = render(settings.output_dir, label, options, pdfs)
            except Exception as err:  # the maps are fine; only the report failed
                results[label] = _failed(name, err, settings)
                continue
            LOGGER.info(
                "%s: %s in %.1f s",
                name,
                ", ".join(p.name for p in written),
                time.perf_counter() - started,
            )
            results[label] = batch.UnitResult(name, batch.DONE)
    for label in results:
        pdf_path = naming.report_path(settings.output_dir, label, extension=".pdf")
        if pdf_path in pdfs.failures:
            results[label] = _failed(f"sub-{label} report", pdfs.failures[pdf_path], settings)
    return list(results.values())


def _failed(name: str, err: BaseException, settings: Settings) -> batch.UnitResult:
    """Log a report's failure (the traceback with ``-v``) and return it as a result."""
    level = logging.ERROR if settings.verbosity >= 1 else logging.DEBUG
    LOGGER.log(level, "%s failed", name, exc_info=err)
    LOGGER.error("%s: not written: %s: %s", name, type(err).__name__, err)
    return batch.UnitResult(name, batch.FAILED, f"{type(err).__name__}: {err}")


def render_group_report(settings: Settings) -> None:
    """Write ``OUTPUT_DIR/group.html`` (+ ``.pdf``) from the group level's outputs."""
    from bids_glm.report.group_report import render_group_report as render
    from bids_glm.report.pdf_writer import PdfWriter

    options = report_options(settings)
    in_child = options.write_pdf and settings.n_cpus > 1  # it imports WeasyPrint meanwhile
    with PdfWriter(in_child=in_child) as pdfs:
        written = render(settings.output_dir, options, pdfs)
    if pdfs.failures:
        raise next(iter(pdfs.failures.values()))
    LOGGER.info("group report: %s", ", ".join(p.name for p in written))


def participants_to_report(
    units: Sequence[AnalysisUnit], done: Sequence[AnalysisUnit], settings: Settings
) -> list[str]:
    """Participants just analysed, and complete ones whose report is missing."""
    done_names = {unit.name for unit in done}
    labels = []
    for unit in units:
        label = unit.entities["sub"]
        if unit.name in done_names:
            labels.append(label)
            continue
        complete = manifest.is_complete(
            naming.manifest_path(settings.output_dir, unit.entities),
            unit_fingerprint(unit, settings),
        )
        if complete and not naming.report_path(settings.output_dir, label).is_file():
            labels.append(label)
    return list(dict.fromkeys(labels))


def rerender_reports(settings: Settings) -> None:
    """``--reports-only``: render the reports of participants with complete outputs.

    Raises
    ------
    InputError
        OUTPUT_DIR holds no complete outputs of the requested participants.
    """
    labels = participants_with_outputs(settings)
    if not labels:
        wanted = ", ".join(settings.participant_labels) or "any participant"
        raise InputError(
            f"--reports-only: {settings.output_dir} holds no complete outputs for {wanted} "
            "(run the participant level first)"
        )
    results = render_participant_reports(settings, labels)
    LOGGER.info(
        "reports: %d written, %d failed",
        *(sum(r.status == s for r in results) for s in (batch.DONE, batch.FAILED)),
    )
    batch.raise_for_failures(results)
