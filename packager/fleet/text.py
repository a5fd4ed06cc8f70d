"""Plain-text pieces of the status views, with no colour (the command line adds it): sparklines of a
series, ages ("3h ago"), compact counts (1.2k) and rates, and cutting a cell to a width.

Enters: numbers, times, strings. Leaves: strings. Standard library only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

BARS = "▁▂▃▄▅▆▇█"
NONE = "·"  # an hour without data
DASH = "-"


def sparkline(values: Sequence[float | None]) -> str:
    """One character per value, scaled from 0 to the largest value (so an idle model is flat, not noise
    blown up); hours without data are dots."""
    top = max((v for v in values if v is not None), default=None)
    if top is None:
        return NONE * len(values)
    out = []
    for v in values:
        if v is None:
            out.append(NONE)
        elif top <= 0:
            out.append(BARS[0])
        else:
            out.append(BARS[min(len(BARS) - 1, int(v / top * (len(BARS) - 1) + 0.5))])
    return "".join(out)


def age(at: datetime | None, now: datetime | None = None) -> str:
    """How long ago: 45s, 12m, 3h, 5d, 8w (always the largest whole unit)."""
    if at is None:
        return DASH
    seconds = max(0.0, ((now or datetime.now(UTC)) - at).total_seconds())
    for unit, size in (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


def count(v: float | None) -> str:
    if v is None:
        return DASH
    if v >= 10_000_000:
        return f"{v / 1_000_000:.0f}M"
    if v >= 1_000_000:
        return f"{v / 1_000_000:.1f}M"
    if v >= 10_000:
        return f"{v / 1000:.0f}k"
    return f"{v:,.0f}"


def pct(v: float | None) -> str:
    if v is None:
        return DASH
    if v == 0:
        return "0"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def ms(v: float | None) -> str:
    if v is None:
        return DASH
    return f"{v:.1f}" if v < 100 else f"{v:,.0f}"


def cut(text: str, width: int) -> str:
    """text in at most `width` characters, an ellipsis marking a cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def short_digest(digest: str) -> str:
    """sha256:0123456789ab... -> 01234567 (enough to tell images apart in a table)."""
    return digest.partition(":")[2][:8] if digest else DASH
