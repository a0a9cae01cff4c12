"""The font of the built-in templates: Liberation Sans, shipped in ``templates/fonts/``.

The PDF loads the four TTF files with ``@font-face`` (``templates/fonts.css``), so WeasyPrint lays
out the same text the same way on every machine, whatever fonts are installed. Liberation Sans has
the widths of Arial, so a browser without it (the HTML page) lays text out alike with Arial.

:func:`value_size` picks a metric card's value size from the value's real width in Liberation Sans
Bold, so long values shrink to fit their card.
"""

from __future__ import annotations

import functools
from pathlib import Path

FONT_DIR = Path(__file__).resolve().parents[2] / "templates" / "fonts"
"""The bundled fonts and their licence (SIL Open Font License 1.1, ``LICENSE-OFL.txt``)."""

CARD_VALUE_WIDTH_PT = 100.0
"""Room for a card's value: four cards side by side on A4 portrait leave about 104 pt of text width."""

VALUE_SIZES = (("xl", 19.0), ("l", 16.0), ("m", 13.5), ("s", 11.5))
"""Size classes of ``.metric-value`` in ``report.css`` (pt), largest first; smaller still is ``xs``."""


@functools.cache
def _advances(style: str) -> tuple[dict[int, int], int]:
    from fontTools.ttLib import TTFont

    with TTFont(FONT_DIR / f"LiberationSans-{style}.ttf", lazy=True) as font:
        metrics = font["hmtx"].metrics
        widths = {code: metrics[glyph][0] for code, glyph in font.getBestCmap().items()}
        return widths, font["head"].unitsPerEm


def width_em(text: str, style: str = "Bold") -> float:
    """The advance width of ``text`` in Liberation Sans (``Regular``, ``Bold``...), in em.

    ``round(width_em("$1,110,626"), 3) == 5.005``: at 19 pt the value is 95 pt wide.
    """
    widths, units = _advances(style)
    unknown = widths[ord("M")]  # a character the font lacks is drawn by a fallback font: count it wide
    return sum(widths.get(ord(char), unknown) for char in text) / units


def value_size(text: str, room_pt: float = CARD_VALUE_WIDTH_PT) -> str:
    """The largest size class at which ``text`` fits ``room_pt``: ``"xl"`` (19 pt) ... ``"xs"``."""
    em = width_em(text)
    for name, points in VALUE_SIZES:
        if em * points <= room_pt:
            return name
    return "xs"
