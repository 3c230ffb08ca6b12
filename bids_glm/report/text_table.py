"""Tables as aligned plain text: how the PDF sets its cluster tables.

WeasyPrint lays out each table cell as boxes of its own, about a millisecond a cell: the
eight cluster tables (~25 rows of 7 cells each) of a participant report took half of its
PDF's time (1.1 of 2.4 s). Set as preformatted text in a monospaced font, the same rows
and columns take ~0.1 s. The HTML report keeps real tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

COLUMN_GAP = "  "


def text_table(header: Sequence[str], rows: Sequence[Mapping], keys: Sequence[str]) -> str:
    """Rows of display strings as a plain-text table with a header and a rule under it.

    Parameters
    ----------
    header : sequence of str
        Column titles.
    rows : sequence of mapping
        One mapping per row; ``row[key]`` is the text of the cell of each key.
    keys : sequence of str
        The rows' keys, in column order (one per title).

    Returns
    -------
    str
        Lines joined by newlines: the first column left-aligned (labels), the others
        right-aligned (numbers), columns as wide as their widest cell, no trailing spaces.
    """
    if len(header) != len(keys):
        raise ValueError(f"{len(header)} column titles for {len(keys)} keys")
    cells = [[str(row[key]) for key in keys] for row in rows]
    widths = [max(map(len, column)) for column in zip(header, *cells, strict=True)]
    rule = ["-" * width for width in widths]
    return "\n".join(_line(line, widths) for line in (list(header), rule, *cells))


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *others = cells
    aligned = [first.ljust(widths[0])]
    aligned += [cell.rjust(width) for cell, width in zip(others, widths[1:], strict=True)]
    return COLUMN_GAP.join(aligned).rstrip()
