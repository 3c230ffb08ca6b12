"""Render ``OUTPUT_DIR/group.html`` (+ ``.pdf``) from what the group level wrote.

For every task and space in ``OUTPUT_DIR/group/`` (found by its design table): the
subjects and their input maps, the group design, and per contrast the thresholded z map
with its cluster table, computed by :mod:`bids_glm.glm.clusters` with the
:class:`ReportOptions` thresholds (the group level writes no cluster table).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from bids_glm import __version__
from bids_glm.derivatives import naming
from bids_glm.image.mesh import MeshFiles
from bids_glm.report import collect
from bids_glm.report.figures import contrast_vectors_svg, design_matrix_svg
from bids_glm.report.pdf_writer import PdfWriter
from bids_glm.report.render import ReportDocument, markdown_blocks, write_report
from bids_glm.report.surface_views import NO_COMMON_MESH, NO_MESH, surface_contrast_view
from bids_glm.report.views import (
    NOT_RECORDED,
    Figure,
    ReportOptions,
    Volume,
    contrast_view,
    figure,
    load_volume,
)

LOGGER = logging.getLogger("bids_glm")


def read_design(path: Path) -> pd.DataFrame | None:
    """The group design (``participant_id`` + columns), or None when unreadable."""
    try:
        return pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)
    except (OSError, ValueError) as error:
        LOGGER.warning("report: %s unreadable (%s)", path, error)
        return None


def mean_underlay(output_dir: Path, entities: dict, grid: Volume | None) -> Volume | None:
    """The average of the participants' mean BOLD images on the group grid, if recorded."""
    if grid is None:
        return None
    images = []
    for manifest in sorted(naming.manifests_dir(output_dir).glob("sub-*.json")):
        found = naming.manifest_entities(manifest)
        if any(found.get(k) != entities.get(k) for k in ("task", "space")):
            continue
        mean = collect.read_summary(manifest).mean_image
        volume = load_volume(output_dir / str(mean)) if mean else None
        if volume is not None and volume.data.shape == grid.data.shape:
            images.append(volume.data)
    return Volume(np.mean(images, axis=0), grid.affine) if images else None


def template_meshes(output_dir: Path, entities: dict) -> MeshFiles | None:
    """The meshes a participant of this task and template space recorded (fsnative: none).

    Participants in a template space share its meshes; native surfaces differ per
    participant, so a group map in ``fsnative`` has no mesh to be drawn on.
    """
    if entities.get("space") == "fsnative":
        return None
    for manifest in sorted(naming.manifests_dir(output_dir).glob("sub-*.json")):
        found = naming.manifest_entities(manifest)
        if all(found.get(k) == entities.get(k) for k in ("task", "space")):
            summary = collect.read_summary(manifest)
            paths = [Path(p) for p in summary.meshes]
            if len(paths) == 2 and all(p.is_file() for p in paths):
                return MeshFiles(*paths)
    return None


def _no_mesh(entities: dict) -> str:
    """Why a group surface map has no picture: fsnative has no common mesh; else none found."""
    return NO_COMMON_MESH if entities.get("space") == "fsnative" else NO_MESH


def subject_rows(design: pd.DataFrame | None, maps: list[collect.StatMap]) -> list[dict]:
    """Per subject: the contrasts it enters and its row of the design."""
    subjects = [] if design is None else list(design.get("participant_id", []))
    for stat_map in maps:
        subjects += [s for s in stat_map.sidecar.get("Subjects", []) if s not in subjects]
    rows = []
    for subject in subjects:
        entered = [m.name for m in maps if subject in m.sidecar.get("Subjects", [])]
        values = ""
        if design is not None and "participant_id" in design:
            row = design[design["participant_id"] == subject].drop(columns="participant_id")
            values = ", ".join(f"{k} = {v:g}" for k, v in row.iloc[0].items()) if len(row) else ""
        rows.append(
            {
                "subject": subject,
                "contrasts": ", ".join(entered) or "none",
                "design": values or NOT_RECORDED,
            }
        )
    return rows


def group_view(output_dir: Path, design_path: Path, options: ReportOptions) -> dict:
    """Everything shown for one task and space of the group level."""
    folder = design_path.parent
    entities = naming.parse_name(design_path).entities
    design = read_design(design_path)
    maps = collect.find_z_maps(folder, entities)
    on_surface = any(m.on_surface for m in maps)  # no volume mask nor underlay
    mask = None if on_surface else load_volume(naming.mask_path(folder, entities))
    underlay = mean_underlay(output_dir, entities, mask) or mask
    figures: list[Figure] = []
    columns = [] if design is None else [c for c in design.columns if c != "participant_id"]
    if columns:
        matrix = design[columns].set_index(design["participant_id"].astype(str))
        figures.append(figure(design_matrix_svg, matrix, alt="group design", kind="narrow"))
        weights = {m.name: m.sidecar.get("ContrastWeights", {}) for m in maps}
        if weights:
            figures.append(figure(contrast_vectors_svg, weights, columns, alt="group contrasts"))
    return {
        "title": " ".join(f"{k}-{v}" for k, v in entities.items()),
        "anchor": naming.unit_name(entities),
        "subjects": subject_rows(design, maps),
        "design_figures": figures,
        "design_note": "" if design is not None else "group design not readable",
        "contrasts": [
            surface_contrast_view(
                m,
                template_meshes(output_dir, entities),
                options,
                m.name,
                no_mesh=_no_mesh(entities),
            )
            if m.on_surface
            else contrast_view(m, mask, underlay, options, m.name)
            for m in maps
        ],
        "underlay_note": (
            ""
            if underlay is not mask or on_surface
            else "participants' mean BOLD images not recorded: "
            "the group mask is shown as the underlay"
        ),
    }


def group_document(output_dir: Path, options: ReportOptions) -> ReportDocument:
    """The group report: its views (figures drawn, tables read), ready to render."""
    output_dir = Path(output_dir)
    designs = naming.find_group_designs(output_dir)
    dataset = collect.read_json(output_dir / "dataset_description.json")
    context = {
        "dataset_name": dataset.get("Name", NOT_RECORDED),
        "groups": [group_view(output_dir, path, options) for path in designs],
        "methods": markdown_blocks(collect.read_text(naming.citation_path(output_dir, "md"))),
        "version": __version__,
        "options": options,
    }
    return ReportDocument("group.html.j2", context)


def render_group_report(
    output_dir: Path, options: ReportOptions, pdfs: PdfWriter | None = None
) -> list[Path]:
    """Render ``OUTPUT_DIR/group.html`` (+ ``.pdf``) from ``OUTPUT_DIR/group/``.

    Parameters
    ----------
    output_dir : Path
        The OUTPUT_DIR the group level wrote into (its maps are in ``group/``).
    options : ReportOptions
        Thresholds for the maps and cluster tables; whether to write the PDF.
    pdfs : PdfWriter, optional
        Where the PDF is made; here, before returning, if None.

    Returns
    -------
    list of Path
        The files written by now (a report with a note when the group level wrote nothing;
        a PDF queued in ``pdfs`` is not listed).
    """
    document = group_document(output_dir, options)
    return write_report(document, output_dir, None, options.write_pdf, pdfs)
