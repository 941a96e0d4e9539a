"""Text for people: the aligned plain-text table, the Markdown table and the text progress bar.

One formatter of each, so that every command's table and every bar looks alike. Cells are
strings: each caller decides how its numbers read (three decimals for metrics, one for mL).
Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence

COLUMN_GAP = "  "


def text_table(rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """Rows (the first is the header) as aligned columns two spaces apart.

    ``align`` gives one letter per column, ``l`` (left) or ``r`` (right); by default the first
    column is left-aligned and the others, numbers as a rule, right-aligned. A left-aligned last
    column is not padded, so free text there (a title) leaves no trailing spaces.
    """
    columns = len(rows[0])
    align = align or "l" + "r" * (columns - 1)
    if len(align) != columns or set(align) - {"l", "r"}:
        raise ValueError(f"align needs one of 'l'/'r' per column ({columns}), got {align!r}")
    widths = [max(len(row[column]) for row in rows) for column in range(columns)]
    if align[-1] == "l":
        widths[-1] = 0
    return "\n".join(
        COLUMN_GAP.join(
            cell.ljust(width) if side == "l" else cell.rjust(width)
            for cell, width, side in zip(row, widths, align, strict=True)
        )
        for row in rows
    )


def markdown_table(rows: Sequence[Sequence[str]]) -> str:
    """Rows (the first is the header) as a GitHub-flavoured Markdown table, one line per row."""
    header, *body = rows
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def progress_bar(fraction: float, width: int) -> str:
    """``[#######.......]  50%``: ``width`` characters of bar, then the percentage."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}"
