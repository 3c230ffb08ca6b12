"""The participant and group reports, rendered from a real participant-level run.

One small demo (2 subjects x 2 runs, 6 mm smoothing) is generated and analysed once per
module; its null condition ``scrambled`` is renamed to a hostile trial type first.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html import unescape
from html.parser import HTMLParser

import matplotlib.image
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from bids_glm.cli.main import main as bids_glm_main
from bids_glm.demo.dataset import make_demo_dataset
from bids_glm.report import collect
from bids_glm.report.group_report import group_document, render_group_report
from bids_glm.report.render import (
    ReportOptions,
    render_participant_reports,
)

HOSTILE = "<img src=x onerror=alert(1)>"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ClusterTables(HTMLParser):
    """Rows of every ``<table class="clusters" data-contrast=...>``, by contrast anchor."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "clusters":
            self._table = attrs["data-contrast"]
            self.tables[self._table] = []
        elif self._table and tag == "tr":
            self._row = []
        elif self._row is not None and tag == "td":
            self._in_cell = True
            self._row.append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "td":
            self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self._row[-1] += data.strip()


def cluster_tables(html: str) -> dict[str, list[list[str]]]:
    parser = ClusterTables()
    parser.feed(html)
    return parser.tables


def fixed_effects_table(html: str, contrast: str) -> list[list[str]]:
    tables = cluster_tables(html)
    (key,) = [k for k in tables if k.endswith(f"_contrast-{contrast}") and "_run-" not in k]
    return tables[key]


def stated_thresholds(html: str) -> list[str]:
    return [unescape(t) for t in re.findall(r'<span class="threshold">([^<]*)</span>', html)]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    """A 2-subject demo with a hostile trial type, analysed by the participant level."""
    root = tmp_path_factory.mktemp("report")
    bids_dir = root / "bids"
    truth = make_demo_dataset(bids_dir, n_subjects=2, n_runs=2)
    for events in bids_dir.glob("sub-*/func/*_events.tsv"):
        events.write_text(events.read_text().replace("scrambled", HOSTILE))
    output_dir = root / "output"
    argv = [str(bids_dir), str(output_dir), "participant", "--work-dir", str(root / "work")]
    assert bids_glm_main([*argv, "--smoothing-fwhm", "6", "-q"]) == 0
    html_path, pdf_path = render_participant_reports(output_dir, "01", ReportOptions())
    return {
        "root": root,
        "bids": bids_dir,
        "output": output_dir,
        "truth": truth,
        "html_path": html_path,
        "pdf_path": pdf_path,
        "html": html_path.read_text(),
    }


def test_report_is_written_at_the_top_with_every_section(demo):
    assert demo["html_path"] == demo["output"] / "sub-01.html"
    assert demo["pdf_path"] == demo["output"] / "sub-01.pdf"
    html = demo["html"]
    for section in ("summary", "runs", "mask", "contrasts", "methods", "about"):
        assert f'<section id="{section}"' in html
        assert f'href="#{section}"' in html
    assert "run-1" in html and "run-2" in html
    assert "First-level statistical analyses were performed with bids-glm" in html
    assert not list(demo["output"].glob(".sub-01.*.tmp"))  # atomic writes left nothing


def test_report_is_self_contained(demo):
    html = demo["html"]
    assert "<script" not in html.lower()
    assert "<link" not in html.lower() and "@import" not in html and "url(" not in html
    for target in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html):
        assert target.startswith(("data:image/svg+xml;base64,", "#")), target
    figures = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert len(figures) >= 10  # 2 runs x 5, mask, 3 contrasts x 2
    for payload in figures:
        svg = base64.b64decode(payload).decode()
        assert "<svg" in svg and "<script" not in svg and HOSTILE not in svg


def test_hostile_trial_type_is_escaped(demo):
    html = demo["html"]
    assert HOSTILE not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_cluster_table_finds_planted_blobs(demo):
    truth = demo["truth"]
    affine = np.array(truth["affine"])
    voxel_mm = truth["voxel_size_mm"]
    for condition, planted in truth["planted"].items():
        centre_mm = affine[:3, :3] @ planted["centre_ijk"] + affine[:3, 3]
        first = fixed_effects_table(demo["html"], condition)[0]
        assert first[0] == "1"
        peak_mm = np.array([float(v) for v in first[1:4]])
        assert np.all(np.abs(peak_mm - centre_mm) <= voxel_mm), (condition, peak_mm, centre_mm)
        assert int(first[5]) >= planted["n_voxels"]  # smoothing only grows the blob


def test_changed_threshold_changes_statement_and_table(demo, tmp_path):
    output = tmp_path / "output"
    shutil.copytree(demo["output"], output)
    mask_path = next(output.glob("sub-01/func/sub-01_task-faces_*_mask.nii.gz"))
    n_mask = int((np.asanyarray(nib.load(mask_path).dataobj) > 0).sum())
    options = ReportOptions(height_control="bonferroni", alpha=0.05, cluster_extent=5)
    (html_path,) = render_participant_reports(
        output, "01", ReportOptions(**{**options.__dict__, "write_pdf": False})
    )
    html = html_path.read_text()
    z_bonferroni = norm.isf(0.05 / n_mask)
    expected = (
        f"z > {z_bonferroni:.2f} (Bonferroni-corrected p < 0.05 over {n_mask} voxels), "
        "clusters >= 5 voxels"
    )
    assert set(stated_thresholds(html)) == {expected}
    assert set(stated_thresholds(demo["html"])) == {
        "z > 3.09 (uncorrected p < 0.001), clusters >= 0 voxels"
    }
    default_rows = fixed_effects_table(demo["html"], "face")
    strict_rows = fixed_effects_table(html, "face")
    assert strict_rows != default_rows
    assert strict_rows[0][1:4] == default_rows[0][1:4]  # the blob's peak is kept
    sizes = [int(row[5]) for row in strict_rows if row[5]]
    assert min(sizes) >= 5
    assert all(float(row[4]) > z_bonferroni for row in strict_rows)


def run_table(html: str, contrast: str, run: str) -> list[list[str]]:
    tables = cluster_tables(html)
    (key,) = [k for k in tables if k.endswith(f"_contrast-{contrast}") and f"_{run}_" in k]
    return tables[key]


def test_subject_maps_know_the_cluster_table_the_participant_level_wrote(demo):
    """Each fixed-effects z map points at its written ``_clusters.tsv``; run maps at none."""
    output = demo["output"]
    manifests = collect.participant_manifests(output, "01")
    unit = collect.read_unit(output, manifests[0])
    assert unit.subject_maps and unit.run_maps
    for stat_map in unit.subject_maps:
        assert stat_map.clusters_path.is_file()
        assert stat_map.clusters_path.name.endswith(f"_desc-{stat_map.label}_clusters.tsv")
    assert all(m.clusters_path is None for m in unit.run_maps)


def test_subject_table_is_the_written_one_when_thresholds_match(demo, tmp_path):
    """The fixed-effects table is read from the participant level's ``_clusters.tsv`` when
    its sidecar records the report's threshold; otherwise (other options, a run's map) it
    is computed from the z map."""
    output = tmp_path / "output"
    shutil.copytree(demo["output"], output)
    tsv = next(output.glob("sub-01/func/sub-01_task-faces_space-*_desc-face_clusters.tsv"))
    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    table.loc[0, ["Peak Stat", "Cluster Size (voxels)"]] = ["42.4242", "12345"]
    table.to_csv(tsv, sep="\t", index=False)
    # a table beside a run's z map is never read: the participant level writes none there
    run_tsv = tsv.with_name(tsv.name.replace("_task-faces_", "_task-faces_run-1_"))
    run_tsv.write_text(tsv.read_text())
    run_tsv.with_suffix(".json").write_text(tsv.with_suffix(".json").read_text())
    original = fixed_effects_table(demo["html"], "face")

    options = ReportOptions(write_pdf=False, run_level=True)
    (html_path,) = render_participant_reports(output, "01", options)
    html = html_path.read_text()
    altered = fixed_effects_table(html, "face")
    assert altered[0][4:6] == ["42.42", "12345"]
    assert altered[0][:4] == original[0][:4] and altered[1:] == original[1:]
    assert run_table(html, "face", "run-1")[0][4] != "42.42"

    for other in (
        ReportOptions(cluster_extent=1, write_pdf=False),  # sidecar: ClusterExtentVoxels 0
        ReportOptions(alpha=0.0011, write_pdf=False),
        ReportOptions(height_control="none", alpha=3.090232306167813, write_pdf=False),
    ):
        (html_path,) = render_participant_reports(output, "01", other)
        recomputed = fixed_effects_table(html_path.read_text(), "face")
        assert recomputed[0][4:6] != ["42.42", "12345"], other
        assert recomputed[0][:4] == original[0][:4], other
        if other.cluster_extent == 1:  # removes no cluster: the table as first written
            assert recomputed == original

    tsv.write_text("not\ta cluster table\n")  # damaged: recomputed, with a warning
    (html_path,) = render_participant_reports(output, "01", ReportOptions(write_pdf=False))
    assert fixed_effects_table(html_path.read_text(), "face") == original


def test_missing_pieces_become_notes(demo, tmp_path):
    output = tmp_path / "output"
    shutil.copytree(demo["output"], output)
    (output / "logs" / "CITATION.md").unlink()
    func = output / "sub-01" / "func"
    for mask in func.glob("*_mask.nii.gz"):
        mask.unlink()
    design_json = next(func.glob("*_run-1_*_design.json"))
    design_json.unlink()
    space = demo["truth"]["space"]
    z_map = func / f"sub-01_task-faces_space-{space}_contrast-house_stat-z_statmap.nii.gz"
    z_map.write_bytes(b"not a nifti file")
    (html_path,) = render_participant_reports(output, "sub-01", ReportOptions(write_pdf=False))
    html = html_path.read_text()
    assert "The methods text (logs/CITATION.md) was not found." in html
    assert "design sidecar (.json) missing" in html
    assert "unreadable" in html
    assert "face (fixed effects)" in html  # the other contrasts are still shown


def test_no_report_without_outputs(tmp_path):
    assert render_participant_reports(tmp_path, "01", ReportOptions()) == []


def test_screenshot_in_headless_chromium_is_not_blank(demo, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium (Debian package chromium) is not installed")
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={screenshot}",
            "--window-size=1200,2400",
            demo["html_path"].as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100
    assert (pixels.min(axis=-1) < 0.9).mean() > 0.05  # not all white


def test_pdf_has_pages_and_converts_to_png(demo, tmp_path):
    pdftoppm = shutil.which("pdftoppm")
    if pdftoppm is None:
        pytest.skip("pdftoppm (Debian package poppler-utils) is not installed")
    assert demo["pdf_path"].read_bytes().startswith(b"%PDF")
    subprocess.run(
        [pdftoppm, "-r", "40", "-png", str(demo["pdf_path"]), str(tmp_path / "page")],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 6  # a page break before each of the six sections
    first = matplotlib.image.imread(pages[0])[..., :3]
    assert (first.min(axis=-1) < 0.9).mean() > 0.01


def test_pdf_sets_the_html_cluster_tables_as_text(demo):
    """The PDF's cluster tables (aligned text, `text_table`) hold the HTML tables' rows."""
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext (Debian package poppler-utils) is not installed")
    text = subprocess.run(
        [pdftotext, "-layout", str(demo["pdf_path"]), "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    lines = {" ".join(line.split()) for line in text.splitlines()}
    assert "Cluster X (mm) Y (mm) Z (mm) Peak z Size (voxels) Size (mm\u00b3)" in lines
    rows = [row for table in cluster_tables(demo["html"]).values() for row in table]
    assert len(rows) >= 3
    for row in rows:
        assert " ".join(cell for cell in row if cell) in lines


def test_group_report(demo):
    output = demo["output"]
    argv = [str(demo["bids"]), str(output), "group", "--work-dir", str(demo["root"] / "work")]
    assert bids_glm_main([*argv, "-q"]) == 0
    (html_path,) = render_group_report(output, ReportOptions(write_pdf=False))
    assert html_path == output / "group.html"
    html = html_path.read_text()
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<script" not in html.lower()
    assert "sub-01" in html and "sub-02" in html
    tables = cluster_tables(html)
    face = [rows for key, rows in tables.items() if key.endswith("_contrast-face")]
    assert face and face[0][0][0] == "1"
    assert set(stated_thresholds(html)) == {
        "z > 3.09 (uncorrected p < 0.001), clusters >= 0 voxels"
    }
    printed = group_document(output, ReportOptions()).html(for_print=True)  # the PDF's
    assert not cluster_tables(printed) and printed.count('<pre class="clusters">') == len(tables)
    assert " ".join(face[0][0]) in {" ".join(line.split()) for line in printed.splitlines()}


def test_a_pdf_that_cannot_be_written_fails_its_report_only(demo, capsys):
    """The PDFs are made in a child process; one that cannot be written (its path is a
    folder) fails that participant's report, the others are written, the exit is 1."""
    output = demo["output"]
    blocked = output / "sub-02.pdf"
    blocked.unlink()
    blocked.mkdir()
    try:
        argv = [str(demo["bids"]), str(output), "participant", "--reports-only"]
        assert bids_glm_main([*argv, "--work-dir", str(demo["root"] / "work")]) == 1
    finally:
        blocked.rmdir()
    assert "sub-02 report: not written: OutputError" in capsys.readouterr().err
    assert (output / "sub-01.pdf").read_bytes().startswith(b"%PDF")
    assert (output / "sub-02.html").is_file()
    assert not list(output.glob(".sub-0*.tmp"))
