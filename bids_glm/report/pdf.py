"""HTML report -> PDF with WeasyPrint (imported only when a PDF is wanted)."""

from __future__ import annotations

import logging
from pathlib import Path

from bids_glm.derivatives import files as derivatives


def html_to_pdf(html: str) -> bytes:
    """Render report HTML (self-contained: only ``data:`` resources) to PDF bytes.

    Parameters
    ----------
    html : str
        The report's HTML text; its print CSS decides page size and breaks.

    Returns
    -------
    bytes
        The PDF document.

    Raises
    ------
    ImportError, OSError
        WeasyPrint or its system libraries (pango) are not installed.
    """
    import weasyprint

    # WeasyPrint logs every CSS property it does not support; they are expected here.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    return weasyprint.HTML(string=html, url_fetcher=_data_only_fetcher()).write_pdf()


def _data_only_fetcher():
    """A WeasyPrint URL fetcher that loads ``data:`` URIs only: nothing from outside."""
    from weasyprint import urls

    if hasattr(urls, "URLFetcher"):  # recent WeasyPrint (70 here): a class
        return urls.URLFetcher(allowed_protocols={"data"})

    def fetch(url: str) -> dict:
        if not url.startswith("data:"):
            raise ValueError(f"the report loads no external resource; refused {url!r}")
        return urls.default_url_fetcher(url)

    return fetch


def write_pdf(html: str, pdf_path: Path) -> Path:
    """Write the PDF of ``html`` to ``pdf_path`` atomically and return the path."""
    derivatives.write_bytes_atomic(Path(pdf_path), html_to_pdf(html))
    return Path(pdf_path)
