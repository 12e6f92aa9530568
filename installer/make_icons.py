"""Render the app icon (assets/icons/clinicfusion.svg) to the PNG, ICO and ICNS files the
launchers and installers need, so they are always drawn from the one SVG.

    QT_QPA_PLATFORM=offscreen python installer/make_icons.py

Writes assets/icons/clinicfusion-<size>.png (16 ... 512), clinicfusion.ico (Windows, 16-256)
and clinicfusion.icns (macOS, 16-512 with @2x). Run it after changing the SVG and commit the
results (a build machine then needs neither Qt's SVG renderer nor an icon tool).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image

ICONS = Path(__file__).resolve().parent.parent / "assets" / "icons"
SVG = ICONS / "clinicfusion.svg"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(size: int) -> Image.Image:
    """The SVG drawn at ``size`` x ``size`` pixels with Qt's SVG renderer, as an RGBA image."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"{SVG} is not a valid SVG file")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    rgba = image.convertToFormat(QImage.Format.Format_RGBA8888)  # straight (not premultiplied)
    data = bytes(rgba.constBits())
    return Image.frombuffer("RGBA", (size, size), data, "raw", "RGBA", rgba.bytesPerLine(), 1)


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    rendered: dict[int, Image.Image] = {}
    for size in sorted({*PNG_SIZES, *ICO_SIZES, 1024}):
        rendered[size] = render(size)
        if size in PNG_SIZES:
            target = ICONS / f"clinicfusion-{size}.png"
            # Pillow re-encodes with maximal compression (Qt's PNGs are larger).
            rendered[size].save(target, optimize=True)
            sys.stdout.write(f"wrote {target.name} ({target.stat().st_size} bytes)\n")
    largest = rendered[256]
    largest.save(
        ICONS / "clinicfusion.ico",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[rendered[s] for s in ICO_SIZES if s != 256],
    )
    sys.stdout.write("wrote clinicfusion.ico\n")
    rendered[1024].save(
        ICONS / "clinicfusion.icns",
        append_images=[rendered[s] for s in (16, 32, 64, 128, 256, 512)],
    )
    sys.stdout.write("wrote clinicfusion.icns\n")
    del app
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
