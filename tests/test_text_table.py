"""Cluster tables as aligned text (the PDF's): columns, alignment, escaping left to jinja2."""

from __future__ import annotations

import pytest

from bids_glm.report.text_table import text_table

HEADER = ["Cluster", "X (mm)", "Peak z"]
KEYS = ["id", "x", "peak"]


def test_columns_are_as_wide_as_their_widest_cell_and_numbers_align_right():
    rows = [
        {"id": "1", "x": "-32", "peak": "17.88"},
        {"id": "1a", "x": "8", "peak": "4.31"},
        {"id": "12", "x": "-104", "peak": ""},
    ]
    lines = text_table(HEADER, rows, KEYS).split("\n")
    assert lines == [
        "Cluster  X (mm)  Peak z",
        "-------  ------  ------",
        "1           -32   17.88",
        "1a            8    4.31",
        "12         -104",
    ]


def test_a_cell_wider_than_its_title_widens_the_column():
    rows = [{"id": "Thalamus left", "x": "123456789", "peak": "3.20"}]
    header, rule, row = text_table(HEADER, rows, KEYS).split("\n")
    assert header == "Cluster           X (mm)  Peak z"
    assert rule == "-------------  ---------  ------"
    assert row == "Thalamus left  123456789    3.20"


def test_no_rows_gives_the_header_and_rule_only():
    assert text_table(HEADER, [], KEYS) == "Cluster  X (mm)  Peak z\n-------  ------  ------"


def test_titles_and_keys_must_match():
    with pytest.raises(ValueError, match="3 column titles for 2 keys"):
        text_table(HEADER, [], KEYS[:2])
