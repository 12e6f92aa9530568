"""DejaVu fonts for the PDF report: TrueType, embedded, with µ, ±, Greek and typographic dashes.

The standard PDF fonts (Helvetica) are not embedded and cover Latin-1 only, so a report with
"β-blocker" or "0.5 µm" would depend on the reader's fonts. DejaVu ships inside matplotlib (a
project dependency); it is located through the import system without importing matplotlib,
which would cost a few hundred milliseconds for nothing.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

from clinic_app.domain.errors import ConfigError


@dataclass(frozen=True)
class ReportFonts:
    """The reportlab names of the registered fonts."""

    regular: str = "DejaVuSans"
    bold: str = "DejaVuSans-Bold"
    italic: str = "DejaVuSans-Oblique"
    bold_italic: str = "DejaVuSans-BoldOblique"
    mono: str = "DejaVuSansMono"


FONTS = ReportFonts()

_FILES = {
    FONTS.regular: "DejaVuSans.ttf",
    FONTS.bold: "DejaVuSans-Bold.ttf",
    FONTS.italic: "DejaVuSans-Oblique.ttf",
    FONTS.bold_italic: "DejaVuSans-BoldOblique.ttf",
    FONTS.mono: "DejaVuSansMono.ttf",
}
_lock = threading.Lock()
_registered = False


def font_directory() -> Path:
    """matplotlib's bundled TrueType folder (mpl-data/fonts/ttf), found without importing it."""
    spec = importlib.util.find_spec("matplotlib")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        folder = Path(location) / "mpl-data" / "fonts" / "ttf"
        if (folder / _FILES[FONTS.regular]).is_file():
            return folder
    raise ConfigError(
        "The report font DejaVu Sans was not found (it comes with the matplotlib package).",
        hint="Reinstall ClinicFusion's dependencies (pip install clinicfusion) and try again.",
    )


def register_fonts() -> ReportFonts:
    """Register the DejaVu family with reportlab once per process and return its names."""
    global _registered
    if _registered:
        return FONTS
    with _lock:
        if _registered:
            return FONTS
        from reportlab.lib.fonts import addMapping
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.ttfonts import TTFError, TTFont

        folder = font_directory()
        try:
            for name, file_name in _FILES.items():
                pdfmetrics.registerFont(TTFont(name, str(folder / file_name)))
        except (OSError, TTFError) as error:
            raise ConfigError(
                f"The report font in {folder} cannot be read ({error}).",
                hint="Reinstall the matplotlib package and try again.",
            ) from error
        addMapping(FONTS.regular, 0, 0, FONTS.regular)
        addMapping(FONTS.regular, 1, 0, FONTS.bold)
        addMapping(FONTS.regular, 0, 1, FONTS.italic)
        addMapping(FONTS.regular, 1, 1, FONTS.bold_italic)
        addMapping(FONTS.mono, 0, 0, FONTS.mono)
        addMapping(FONTS.mono, 1, 0, FONTS.mono)
        addMapping(FONTS.mono, 0, 1, FONTS.mono)
        addMapping(FONTS.mono, 1, 1, FONTS.mono)
        _registered = True
    return FONTS
