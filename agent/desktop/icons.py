"""The tray's status icons: drawn once by icons/make_icons.py and kept as files, found here.

A source checkout has them in its top-level icons/; an installed wheel puts a copy under
<prefix>/share/voice-agent/icons.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path

from PIL import Image

from agent.events import AgentState

SOURCE_ICONS_DIR = Path(__file__).resolve().parents[2] / "icons"
APP_ICON_NAME = "voice-agent"
# A file only this project ships: a stray "icons" folder elsewhere is not mistaken for ours.
MARKER_FILE = f"{APP_ICON_NAME}.ico"


def installed_icons_dir() -> Path:
    return Path(sys.prefix) / "share" / "voice-agent" / "icons"


def icons_dir() -> Path:
    """The folder holding the icons: the source checkout's, else the installed copy."""
    candidates = (SOURCE_ICONS_DIR, installed_icons_dir())
    for candidate in candidates:
        if (candidate / MARKER_FILE).is_file():
            return candidate
    raise FileNotFoundError(
        f"voice-agent's icons are missing: looked for {MARKER_FILE} in {candidates[0]} "
        f"(source checkout) and {candidates[1]} (installed copy). "
        "Run `python icons/make_icons.py` in a checkout, or reinstall the package."
    )


def available_sizes(state: AgentState) -> list[int]:
    """The sizes drawn for `state`, smallest first."""
    pattern = re.compile(rf"{re.escape(state.value)}-(\d+)\.png")
    sizes = []
    for path in icons_dir().glob(f"{state.value}-*.png"):
        match = pattern.fullmatch(path.name)
        if match:
            sizes.append(int(match.group(1)))
    return sorted(sizes)


def icon_path(state: AgentState, size: int) -> Path:
    """The PNG for `state` drawn at `size`, or the nearest larger one (the tray scales it
    down), or the largest there is."""
    sizes = available_sizes(state)
    if not sizes:
        raise FileNotFoundError(f"no {state.value}-<size>.png icons in {icons_dir()}")
    chosen = next((available for available in sizes if available >= size), sizes[-1])
    return icons_dir() / f"{state.value}-{chosen}.png"


def icon_image(state: AgentState, size: int = 64) -> Image.Image:
    """The icon as an RGBA image, read from disk once. Shared between callers: copy() it
    before drawing on it."""
    return _load_rgba(icon_path(state, size))


@functools.cache
def _load_rgba(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGBA")  # a new image, loaded: the file is closed after this


def ico_path(state: AgentState | None = None) -> Path:
    """The multi-size Windows .ico for `state`, or the app's own icon when `state` is None."""
    name = APP_ICON_NAME if state is None else state.value
    path = icons_dir() / f"{name}.ico"
    if not path.is_file():
        raise FileNotFoundError(f"missing icon {path}")
    return path
