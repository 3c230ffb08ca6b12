"""HTML report -> PDF with WeasyPrint (imported only when a PDF is wanted).

This module imports nothing of bids-glm: a `bids_glm.report.pdf_writer` child process
imports it (and WeasyPrint), not the numerical modules.
"""

from __future__ import annotations

import logging


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


def import_weasyprint() -> None:
    """Import WeasyPrint ahead of its first use; `html_to_pdf` raises what this meets."""
    try:
        import weasyprint  # noqa: F401
    except (ImportError, OSError):
        pass
