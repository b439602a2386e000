"""CSV exports open in a spreadsheet as data: formula-like text is escaped, numbers stay numbers."""

from __future__ import annotations

import csv
import io

import pandas as pd

from core.views.csv_export import safe_cell, to_csv_bytes


def test_text_that_a_spreadsheet_would_run_as_a_formula_gets_a_leading_apostrophe():
    for risky in ("=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y").png'):
        assert safe_cell(risky) == "'" + risky
    for plain in ("part_7.png", "scratch", "", " =not first"):
        assert safe_cell(plain) == plain
    assert safe_cell(-1.5) == -1.5 and safe_cell(None) is None


def test_an_export_escapes_names_and_keeps_numbers():
    df = pd.DataFrame({"name": ["=cmd|' /C calc'!A0.png", "ok.png"], "score": [-0.25, 3.0], "verdict": ["x", None]})
    rows = list(csv.reader(io.StringIO(to_csv_bytes(df).decode("utf-8"))))
    assert rows[0] == ["name", "score", "verdict"]
    assert rows[1] == ["'=cmd|' /C calc'!A0.png", "-0.25", "x"]
    assert rows[2] == ["ok.png", "3.0", ""]
    assert df["name"].iloc[0].startswith("=")  # the caller's frame is not changed
