"""CSV that a spreadsheet opens as data: a text cell starting with ``= + - @`` (or a tab / carriage return) is a
formula to Excel and LibreOffice, so a file named ``=HYPERLINK("http://…").png`` would run when the export is
opened. Such cells get a leading apostrophe (OWASP's "CSV injection" advice); numbers stay numbers.

    >>> safe_cell('=1+1.png')
    "'=1+1.png"
    >>> to_csv_bytes(pd.DataFrame({"name": ["@sum.png", "ok.png"], "score": [-1.5, 2.0]})).decode()
    "name,score\\n'@sum.png,-1.5\\nok.png,2.0\\n"
"""

from __future__ import annotations

import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value


def to_csv_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as UTF-8 CSV with every text cell made safe for spreadsheets."""
    safe = df.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):  # pandas 3: "str" dtype
            safe[column] = safe[column].map(safe_cell)
    return safe.to_csv(index=False).encode("utf-8")
