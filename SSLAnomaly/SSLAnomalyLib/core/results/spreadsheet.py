"""CSV cells as a spreadsheet shows them: text that starts like a formula (=, +, -, @, a tab or a carriage
return) is run as one by Excel or LibreOffice when a reader opens the CSV (CSV injection: a reader's note
`=HYPERLINK(...)`, a site's file name `@SUM(1).png`), so it is written with a leading apostrophe, OWASP's
rule, which the spreadsheet shows as text. Numbers are written as they are (a negative score stays a number)."""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value):
    """`value` as a CSV cell: a string that starts like a formula prefixed with "'", anything else unchanged."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value
