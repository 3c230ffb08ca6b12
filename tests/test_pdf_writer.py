"""Report PDFs made in a child process (`PdfWriter`): written, in order, and never lost."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess

import pytest

from bids_glm.report import pdf_writer
from bids_glm.report.pdf_writer import PdfWriter


def page(text: str) -> str:
    return f"<html><body><p>{text}</p></body></html>"


def pdf_text(path) -> str:
    pdftotext = shutil.which("pdftotext")
    if pdftotext is None:
        pytest.skip("pdftotext (Debian package poppler-utils) is not installed")
    return subprocess.run(
        [pdftotext, str(path), "-"], check=True, capture_output=True, text=True, timeout=60
    ).stdout


@pytest.mark.parametrize(("in_child", "n_children"), [(True, 1), (True, 2), (False, 1)])
def test_every_submitted_pdf_is_written_with_its_own_text(tmp_path, in_child, n_children):
    paths = [tmp_path / f"sub-{i:02d}.pdf" for i in range(5)]  # more than are held pending
    with PdfWriter(in_child=in_child, n_children=n_children) as pdfs:
        for i, path in enumerate(paths):  # written on return when made here
            assert pdfs.submit(page(f"participant number {i}"), path) is not in_child
    assert not pdfs.failures
    for i, path in enumerate(paths):
        assert path.read_bytes().startswith(b"%PDF")
        assert f"participant number {i}" in pdf_text(path)
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes left nothing


def test_pdfs_are_made_here_when_the_child_dies(tmp_path, caplog):
    with PdfWriter() as pdfs:
        assert not pdfs.submit(page("first"), tmp_path / "first.pdf")  # queued
        for process in list(pdfs._pool._processes.values()):  # an out-of-memory kill
            os.kill(process.pid, signal.SIGKILL)
        with caplog.at_level(logging.WARNING, logger="bids_glm"):
            pdfs.submit(page("second"), tmp_path / "second.pdf")
    assert "their process stopped" in caplog.text
    assert not pdfs.failures
    assert "first" in pdf_text(tmp_path / "first.pdf")
    assert "second" in pdf_text(tmp_path / "second.pdf")


def test_pdfs_are_made_here_when_no_more_children_can_start(tmp_path):
    def process_limit(*args, **kwargs):
        raise OSError(11, "Resource temporarily unavailable")

    with PdfWriter(n_children=2) as pdfs:
        assert not pdfs.submit(page("first"), tmp_path / "first.pdf")  # queued
        pdfs._pool.submit = process_limit  # a second child cannot be spawned
        assert pdfs.submit(page("second"), tmp_path / "second.pdf")  # made here
    assert not pdfs.failures
    assert "first" in pdf_text(tmp_path / "first.pdf")  # made by the child, or here
    assert "second" in pdf_text(tmp_path / "second.pdf")


def test_a_daemonic_process_makes_its_pdfs_itself(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf_writer.multiprocessing.current_process(), "daemon", True)
    with PdfWriter() as pdfs:
        assert pdfs.submit(page("made here"), tmp_path / "sub-01.pdf")  # written on return
    assert "made here" in pdf_text(tmp_path / "sub-01.pdf")


def test_missing_weasyprint_is_a_warning_and_no_pdf(tmp_path, monkeypatch, caplog):
    def no_weasyprint(html: str) -> bytes:
        raise ImportError("No module named 'weasyprint'")

    monkeypatch.setattr(pdf_writer, "html_to_pdf", no_weasyprint)
    with caplog.at_level(logging.WARNING, logger="bids_glm"), PdfWriter(in_child=False) as pdfs:
        assert not pdfs.submit(page("x"), tmp_path / "sub-01.pdf")
    assert "report: no PDF for sub-01.html (No module named 'weasyprint')" in caplog.text
    assert not pdfs.failures and not (tmp_path / "sub-01.pdf").exists()


def test_other_errors_are_kept_for_the_caller(tmp_path):
    target = tmp_path / "not-a-folder"
    target.write_text("a file where the report's folder should be")
    with PdfWriter() as pdfs:
        assert not pdfs.submit(page("x"), target / "sub-01.pdf")  # queued for the child
    (error,) = pdfs.failures.values()
    assert list(pdfs.failures) == [target / "sub-01.pdf"]
    assert "cannot write" in str(error)
