"""Report PDFs made in a child process while this one draws the reports' figures.

WeasyPrint works in one thread: ~0.5 s to import, then ~1 s to lay out a participant
report, after the ~0.5 s this process spends reading maps and drawing the report's figures.
A `PdfWriter` spawns one child process that imports WeasyPrint at once, on the other core,
while this process draws the first report; each report's print HTML then goes to the child,
which makes the PDF while this process goes on to the next participant's report, and this
process writes the bytes (atomically). With more cores, more children make PDFs side by
side (a PDF takes longer than drawing the next report), started as they are needed. Without
a child (``in_child=False``, none could be started, or it died), PDFs are made here, each
as it is submitted.

A PDF that cannot be made because WeasyPrint or its system libraries are missing is a
warning, as before: the HTML report stands. Any other error is kept in `failures`.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import deque
from concurrent.futures import CancelledError, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from bids_glm.derivatives import files as derivatives
from bids_glm.report.pdf import html_to_pdf, import_weasyprint

LOGGER = logging.getLogger("bids_glm")
PENDING_PER_CHILD = 2  # reports whose print HTML waits for a child (bounds the memory held)
# A PDF takes about twice as long as drawing the next report, so three children keep up
# with this process; more would only add their memory (~80 MB each) and WeasyPrint imports.
MAX_CHILDREN = 3


@dataclass(frozen=True)
class _Pending:
    pdf_path: Path
    html: str
    future: Future
    submitted_s: float


class PdfWriter:
    """Writes report PDFs, in a child process where one can be started.

    Use as a context manager: leaving it waits for every PDF submitted (and, on an
    exception, drops the ones not yet made).

    Parameters
    ----------
    in_child : bool
        Make the PDFs in spawned child processes (default); otherwise here, at once.
    n_children : int
        At most this many children (each started when the ones running are all busy; at
        most `MAX_CHILDREN`).

    Attributes
    ----------
    failures : dict of Path to BaseException
        PDFs not written for an error other than a missing WeasyPrint, by path.
    """

    def __init__(self, in_child: bool = True, n_children: int = 1) -> None:
        self.failures: dict[Path, BaseException] = {}
        self._pending: deque[_Pending] = deque()
        n_children = min(max(n_children, 1), MAX_CHILDREN)
        self._max_pending = PENDING_PER_CHILD * n_children
        self._pool: ProcessPoolExecutor | None = None
        if in_child and multiprocessing.current_process().daemon:
            in_child = False  # a daemonic process (a multiprocessing.Pool worker) has none
        if in_child:
            try:
                self._pool = ProcessPoolExecutor(
                    n_children,
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=import_weasyprint,
                )
                self._pool.submit(int)  # spawns the child now: it imports while we draw
            except (OSError, RuntimeError) as err:
                LOGGER.info("report PDFs made in this process: no child process (%s)", err)
                self._stop_pool()

    def submit(self, html: str, pdf_path: Path) -> bool:
        """Make the PDF of ``html`` and write it to ``pdf_path``: here, or when a child
        has made it (by `close` at the latest; logged then).

        Returns
        -------
        bool
            Whether the PDF is written on return (made here); False when it is queued for a
            child, or could not be made here (logged).
        """
        while len(self._pending) >= self._max_pending:
            self._finish_oldest()
        pdf_path = Path(pdf_path)
        if self._pool is not None:
            try:
                future = self._pool.submit(html_to_pdf, html)
            except (BrokenProcessPool, RuntimeError, OSError) as err:  # e.g. a process limit
                self._child_lost(err)
            else:
                self._pending.append(_Pending(pdf_path, html, future, time.perf_counter()))
                return False
        return self._write(pdf_path, html, None)

    def close(self) -> None:
        """Wait for every PDF submitted and write it; stop the child."""
        while self._pending:
            self._finish_oldest()
        self._stop_pool()

    def __enter__(self) -> PdfWriter:
        return self

    def __exit__(self, error_type, *details) -> None:
        if error_type is None:
            self.close()
            return
        for pending in self._pending:
            pending.future.cancel()
        self._pending.clear()
        self._stop_pool()

    def _finish_oldest(self) -> None:
        pending = self._pending.popleft()
        if self._write(pending.pdf_path, pending.html, pending.future):
            LOGGER.info(
                "%s written (%.1f s after its HTML)",
                pending.pdf_path.name,
                time.perf_counter() - pending.submitted_s,
            )

    def _write(self, pdf_path: Path, html: str, future: Future | None) -> bool:
        """Write the PDF the child made (``future``), or make it here (None); whether it
        was written."""
        try:
            if future is not None:
                try:
                    payload = future.result()
                # a child died, or the pool was stopped with this PDF queued: made here
                except (BrokenProcessPool, CancelledError) as err:
                    self._child_lost(err)
                    payload = html_to_pdf(html)
            else:
                payload = html_to_pdf(html)
            derivatives.write_bytes_atomic(pdf_path, payload)
            return True
        except (ImportError, OSError) as error:
            LOGGER.warning("report: no PDF for %s (%s)", pdf_path.with_suffix(".html").name, error)
        except Exception as error:
            LOGGER.debug("%s not written", pdf_path.name, exc_info=True)
            self.failures[pdf_path] = error
        return False

    def _child_lost(self, error: BaseException) -> None:
        if self._pool is not None:
            LOGGER.warning("report PDFs made here from now on: their process stopped (%s)", error)
            self._stop_pool()

    def _stop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
