"""Plain-text tables for the terminal."""

from __future__ import annotations

from typing import Sequence


def table(rows: Sequence[Sequence[str]], header: Sequence[str], right: Sequence[int] = ()) -> str:
    """A plain-text table, columns padded to their widest cell."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        out = []
        for index, (cell, width) in enumerate(zip(cells, widths)):
            out.append(str(cell).rjust(width) if index in right else str(cell).ljust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])
