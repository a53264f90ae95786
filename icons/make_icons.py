#!/usr/bin/env python3
"""Draw the tray status icons and the app icon with Pillow primitives (no fonts, no randomness:
the same pixels on every machine).

    python icons/make_icons.py            # writes into icons/, beside this script
    python icons/make_icons.py OUT_DIR

Every size is drawn on its own at 4x and averaged down (see Pen.finish). Geometry snaps to
whole pixels of the target size and stroke widths come from a per-size table, so the 16 px icon
has crisp one- and two-pixel strokes instead of being a blurred copy of the 64 px one.

The family: a round badge with a darker rim (visible on light and dark taskbars) and a white
glyph. The glyphs differ in shape, not only the badges in colour, for colour-blind users.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

SUPERSAMPLE = 4
TRAY_SIZES = (16, 20, 24, 32, 48, 64)
APP_SIZE = 256
APP_ICO_SIZES = (16, 20, 24, 32, 48, 64, 128, APP_SIZE)

RGBA = tuple[int, int, int, int]
WHITE: RGBA = (255, 255, 255, 255)

# Badge colours: hues far apart and lightness spread too, so even in greyscale they differ.
BADGE_COLOURS: dict[str, RGBA] = {
    "idle": (74, 106, 148, 255),  # calm slate blue
    "thinking": (214, 150, 16, 255),  # amber
    "speaking": (40, 150, 84, 255),  # green
    "interrupted": (236, 90, 28, 255),  # orange, redder than the amber
    "error": (200, 38, 42, 255),  # red
    "listening": (142, 68, 173, 255),  # purple
}
APP_COLOUR: RGBA = BADGE_COLOURS["idle"]


@dataclass(frozen=True)
class Metrics:
    """Per-size tuning, in pixels of the target size."""

    margin: float  # transparent border around the badge
    rim: float  # the darker ring
    thin: float  # arcs: the microphone's cradle, sound waves
    bold: int  # bars centred on the icon's middle: even, so they land on whole pixels
    dot: int  # the thinking dots (an odd size sits half a pixel off centre)
    dot_gap: int


# Tuned by eye at each size: 16 px wants 1 px arcs, 2 px bars and no margin.
METRICS: dict[int, Metrics] = {
    16: Metrics(margin=0, rim=1, thin=1, bold=2, dot=2, dot_gap=2),
    20: Metrics(margin=0, rim=1, thin=1.5, bold=2, dot=3, dot_gap=2),
    24: Metrics(margin=0, rim=1, thin=2, bold=4, dot=4, dot_gap=3),
    32: Metrics(margin=1, rim=1.5, thin=2, bold=4, dot=6, dot_gap=3),
    48: Metrics(margin=1, rim=2, thin=3, bold=6, dot=8, dot_gap=5),
    64: Metrics(margin=2, rim=2.5, thin=4, bold=8, dot=10, dot_gap=7),
    # The app icon's larger sizes.
    128: Metrics(margin=3, rim=4, thin=7, bold=14, dot=20, dot_gap=14),
    256: Metrics(margin=6, rim=7, thin=13, bold=28, dot=40, dot_gap=28),
}


def even(value: float) -> int:
    """The nearest even whole number (at least 2): a width centred on an even size's middle."""
    return max(2, 2 * math.floor(value / 2 + 0.5))


def whole(value: float) -> int:
    """Round half up (Python's round() goes to even, which would skew layouts)."""
    return math.floor(value + 0.5)


def darker(colour: RGBA, factor: float = 0.62) -> RGBA:
    red, green, blue, alpha = colour
    return (round(red * factor), round(green * factor), round(blue * factor), alpha)


class Pen:
    """ImageDraw on a SUPERSAMPLE-times canvas, addressed in pixels of the target size.

    A box (x0, y0, x1, y1) covers target pixels x0 <= x < x1, like a slice; Pillow's own
    boxes include their far edge, hence the -1 on the supersampled canvas.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        side = size * SUPERSAMPLE
        self.image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
        self._draw = ImageDraw.Draw(self.image)

    def _box(self, x0: float, y0: float, x1: float, y1: float) -> tuple[float, ...]:
        scale = SUPERSAMPLE
        return (x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1)

    def rectangle(
        self, x0: float, y0: float, x1: float, y1: float, fill: RGBA, radius: float = 0
    ) -> None:
        box = self._box(x0, y0, x1, y1)
        if radius > 0:
            self._draw.rounded_rectangle(box, radius=radius * SUPERSAMPLE, fill=fill)
        else:
            self._draw.rectangle(box, fill=fill)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: RGBA) -> None:
        self._draw.ellipse(self._box(x0, y0, x1, y1), fill=fill)

    def circle(self, cx: float, cy: float, radius: float, fill: RGBA) -> None:
        self.ellipse(cx - radius, cy - radius, cx + radius, cy + radius, fill)

    def polygon(self, points: list[tuple[float, float]], fill: RGBA) -> None:
        # Pillow samples pixel (i, j) at the point (i, j); shift so it samples pixel centres.
        half = 0.5
        self._draw.polygon(
            [(x * SUPERSAMPLE - half, y * SUPERSAMPLE - half) for x, y in points], fill=fill
        )

    def arc(
        self,
        cx: float,
        cy: float,
        radius: float,
        start: float,
        end: float,
        width: float,
        fill: RGBA,
        round_caps: bool = True,
    ) -> None:
        """An arc whose stroke is centred on `radius`; angles in degrees, clockwise from 3
        o'clock (Pillow's convention)."""
        outer = radius + width / 2
        box = self._box(cx - outer, cy - outer, cx + outer, cy + outer)
        self._draw.arc(box, start, end, fill=fill, width=round(width * SUPERSAMPLE))
        if round_caps:
            for angle in (start, end):
                theta = math.radians(angle)
                self.circle(
                    cx + radius * math.cos(theta), cy + radius * math.sin(theta), width / 2, fill
                )

    def u_shape(
        self,
        x0: float,
        y0: float,
        x1: float,
        y1: float,
        corner: float,
        width: float,
        round_tips: bool,
    ) -> None:
        """A U: a rounded rectangle's outline without its top edge."""
        layer = Image.new("RGBA", self.image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(layer)
        above = y0 - corner - width  # the outline's top edge, cut off below
        draw.rounded_rectangle(
            self._box(x0, above, x1, y1),
            radius=corner * SUPERSAMPLE,
            outline=WHITE,
            width=round(width * SUPERSAMPLE),
        )
        draw.rectangle((0, 0, layer.width, y0 * SUPERSAMPLE - 1), fill=(0, 0, 0, 0))
        self.image.alpha_composite(layer)
        if round_tips:
            for arm_x in (x0 + width / 2, x1 - width / 2):
                self.circle(arm_x, y0, width / 2, WHITE)

    def finish(self) -> Image.Image:
        # Box averaging: each pixel gets exactly its shapes' coverage, so a stroke on whole
        # pixels comes out fully white. LANCZOS would ring and blur it (a 2x2 dot peaks at
        # about 90% white and bleeds into its neighbours; the badge's alpha drops to 254).
        return self.image.reduce(SUPERSAMPLE)


# --- glyphs ------------------------------------------------------------------------------------
# Each draws in white on the badge. u is one pixel of the 16 px design, scaled to the size;
# edges are rounded to whole target pixels so small sizes stay sharp.

Glyph = Callable[[Pen, Metrics], None]


def draw_microphone(pen: Pen, metrics: Metrics, centre_x: float, top: float, unit: float) -> None:
    """A capsule in a U-shaped cradle on a stem (and a foot, where there is room)."""
    u = unit
    capsule_width = even(4 * u)
    half = capsule_width / 2
    capsule_top, capsule_bottom = whole(top), whole(top + 7 * u)
    pen.rectangle(centre_x - half, capsule_top, centre_x + half, capsule_bottom, WHITE, radius=half)
    stroke = metrics.thin
    gap = max(1, whole(0.9 * u))
    cradle_half = half + gap + stroke  # to the outer edge
    cradle_bottom = capsule_bottom + gap + stroke
    # 16 px gets a squarer U: straight runs of whole pixels instead of a blurred curve.
    corner = 2.5 if pen.size == 16 else cradle_half
    pen.u_shape(
        centre_x - cradle_half,
        whole(capsule_bottom - half - 1.5 * u),
        centre_x + cradle_half,
        cradle_bottom,
        corner,
        stroke,
        round_tips=pen.size >= 24,
    )
    has_foot = pen.size >= 24
    foot_y = whole(top + (11 if has_foot else 12) * u)
    stem = metrics.bold if pen.size < 24 else even(stroke)
    pen.rectangle(
        centre_x - stem / 2, cradle_bottom - stroke / 2, centre_x + stem / 2, foot_y, WHITE
    )
    if has_foot:
        foot = even(5 * u)
        pen.rectangle(
            centre_x - foot / 2,
            foot_y - stroke,
            centre_x + foot / 2,
            foot_y,
            WHITE,
            radius=stroke / 2,
        )


def glyph_idle(pen: Pen, metrics: Metrics) -> None:
    u = pen.size / 16
    draw_microphone(pen, metrics, pen.size / 2, 2 * u, u)


def glyph_thinking(pen: Pen, metrics: Metrics) -> None:
    """Three dots in a row: "working on it"."""
    centre = pen.size / 2
    dot = metrics.dot
    pitch = dot + metrics.dot_gap
    # Whole-pixel edges; an odd dot size leaves the row half a pixel off centre, still sharp.
    y0 = whole(centre - dot / 2)
    for offset in (-pitch, 0, pitch):
        x0 = whole(centre + offset - dot / 2)
        if pen.size < 24:
            pen.rectangle(x0, y0, x0 + dot, y0 + dot, WHITE)  # too few pixels for a round dot
        else:
            pen.ellipse(x0, y0, x0 + dot, y0 + dot, WHITE)


def glyph_speaking(pen: Pen, metrics: Metrics) -> None:
    """A loudspeaker with two sound waves."""
    u = pen.size / 16
    body_x0, body_x1 = whole(3 * u), whole(5 * u)
    body_y0, body_y1 = whole(6 * u), pen.size - whole(6 * u)
    cone_x = whole(8 * u)
    cone_y0, cone_y1 = whole(3.5 * u), pen.size - whole(3.5 * u)
    pen.rectangle(body_x0, body_y0, body_x1, body_y1, WHITE)
    pen.polygon(
        [(body_x1, body_y0), (cone_x, cone_y0), (cone_x, cone_y1), (body_x1, body_y1)], WHITE
    )
    if pen.size == 16:
        # Pixel-art waves: a column with one pixel stepping back at each end, like ")".
        for column, top, bottom in ((10, 6, 10), (12, 5, 11)):
            pen.rectangle(column, top, column + 1, bottom, WHITE)
            pen.rectangle(column - 1, top - 1, column, top, WHITE)
            pen.rectangle(column - 1, bottom, column, bottom + 1, WHITE)
        return
    stroke = metrics.thin
    for design_radius in (2.5, 4.5):
        # Where the wave crosses the middle row its stroke covers whole pixel columns.
        radius = whole(design_radius * u - stroke / 2) + stroke / 2
        pen.arc(cone_x, pen.size / 2, radius, -48, 48, stroke, WHITE)


def glyph_interrupted(pen: Pen, metrics: Metrics) -> None:
    """A square "stop"."""
    side = even(6.5 * pen.size / 16)
    x0 = pen.size / 2 - side / 2
    radius = 0 if pen.size < 24 else side * 0.12
    pen.rectangle(x0, x0, x0 + side, x0 + side, WHITE, radius=radius)


def glyph_error(pen: Pen, metrics: Metrics) -> None:
    """An exclamation mark: a bar and a dot."""
    u = pen.size / 16
    width = metrics.bold
    x0 = pen.size / 2 - width / 2
    bar_top, bar_bottom = whole(3 * u), whole(9.5 * u)
    dot_bottom = whole(13 * u)
    radius = 0 if pen.size < 24 else width / 2
    pen.rectangle(x0, bar_top, x0 + width, bar_bottom, WHITE, radius=radius)
    pen.rectangle(x0, dot_bottom - width, x0 + width, dot_bottom, WHITE, radius=radius)


def glyph_listening(pen: Pen, metrics: Metrics) -> None:
    """A recording mark: a solid dot inside a ring ("the microphone is open")."""
    if pen.size == 16:
        # Pixel art: a ring of whole pixels (straight runs, one-pixel steps at the corners)
        # round a 4x4 dot.
        for x0, y0, x1, y1 in ((6, 3, 10, 4), (6, 12, 10, 13), (3, 6, 4, 10), (12, 6, 13, 10),
                               (4, 4, 6, 5), (4, 5, 5, 6), (10, 4, 12, 5), (11, 5, 12, 6),
                               (4, 11, 6, 12), (4, 10, 5, 11), (10, 11, 12, 12),
                               (11, 10, 12, 11)):
            pen.rectangle(x0, y0, x1, y1, WHITE)
        pen.rectangle(6, 6, 10, 10, WHITE)
        return
    centre = pen.size / 2
    ring = metrics.thin
    outer = whole(5 * pen.size / 16)
    pen.arc(centre, centre, outer - ring / 2, 0, 360, ring, WHITE)
    dot = even(4.5 * pen.size / 16)
    pen.ellipse(centre - dot / 2, centre - dot / 2, centre + dot / 2, centre + dot / 2, WHITE)


GLYPHS: dict[str, Glyph] = {
    "idle": glyph_idle,
    "thinking": glyph_thinking,
    "speaking": glyph_speaking,
    "interrupted": glyph_interrupted,
    "error": glyph_error,
    "listening": glyph_listening,
}
STATES = tuple(GLYPHS)


def draw_badge(pen: Pen, metrics: Metrics, colour: RGBA) -> None:
    low, high = metrics.margin, pen.size - metrics.margin
    pen.ellipse(low, low, high, high, darker(colour))
    pen.ellipse(
        low + metrics.rim, low + metrics.rim, high - metrics.rim, high - metrics.rim, colour
    )


def draw_state(state: str, size: int) -> Image.Image:
    pen = Pen(size)
    metrics = METRICS[size]
    draw_badge(pen, metrics, BADGE_COLOURS[state])
    GLYPHS[state](pen, metrics)
    return pen.finish()


def draw_app_icon(size: int) -> Image.Image:
    """The microphone on the idle badge with sound waves on both sides; below 48 px, where the
    waves would crowd it, the idle icon itself."""
    if size < 48:
        return draw_state("idle", size)
    pen = Pen(size)
    metrics = METRICS[size]
    draw_badge(pen, metrics, APP_COLOUR)
    u = size / 16 * 0.65  # a smaller microphone, to leave room for the waves
    centre = size / 2
    top = centre - 5.5 * u
    draw_microphone(pen, metrics, centre, top, u)
    stroke = metrics.thin
    capsule_centre_y = top + 3.5 * u
    for radius in (5.6 * u, 7.8 * u):
        pen.arc(centre, capsule_centre_y, radius, -40, 40, stroke, WHITE)
        pen.arc(centre, capsule_centre_y, radius, 140, 220, stroke, WHITE)
    return pen.finish()


def save_ico(images: list[Image.Image], path: Path) -> None:
    """A multi-size .ico holding each drawn size as is (Pillow would otherwise downscale the
    largest)."""
    largest = max(images, key=lambda image: image.width)
    others = [image for image in images if image is not largest]
    largest.save(path, format="ICO", sizes=[image.size for image in images], append_images=others)


def write_all(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for state in STATES:
        images = [draw_state(state, size) for size in TRAY_SIZES]
        for image in images:
            path = out_dir / f"{state}-{image.width}.png"
            image.save(path, format="PNG")
            written.append(path)
        ico = out_dir / f"{state}.ico"
        save_ico(images, ico)
        written.append(ico)
    app_images = [draw_app_icon(size) for size in APP_ICO_SIZES]
    app_png = out_dir / "voice-agent.png"
    next(image for image in app_images if image.width == APP_SIZE).save(app_png, format="PNG")
    app_ico = out_dir / "voice-agent.ico"
    save_ico(app_images, app_ico)
    written += [app_png, app_ico]
    return written


def main(argv: list[str]) -> int:
    out_dir = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    written = write_all(out_dir)
    print(f"wrote {len(written)} files to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
