"""The tray icons: the checked-in files, how they look at each size, and how the agent finds
them (agent.desktop.icons)."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import IcoImagePlugin, Image

from agent.desktop import icons
from agent.events import AgentState

ICONS = Path(__file__).resolve().parent.parent / "icons"
MAKE_ICONS = ICONS / "make_icons.py"
STATES = [state.value for state in AgentState]
SIZES = (16, 20, 24, 32, 48, 64)
APP_ICO_SIZES = (16, 32, 48, 64, 256)  # at least these


def load(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGBA"), dtype=np.int32)


def ico_frames(path: Path) -> dict[tuple[int, int], Image.Image]:
    with Image.open(path) as ico:
        assert isinstance(ico, IcoImagePlugin.IcoImageFile)
        return {size: ico.ico.getimage(size).convert("RGBA") for size in ico.info["sizes"]}


def glyph_mask(image: Image.Image) -> np.ndarray:
    """Where the white glyph is: opaque and light in every channel (the badges are saturated,
    so at least one of their channels is dark)."""
    rgba = pixels(image)
    return (rgba[..., 3] > 128) & (rgba[..., :3].min(axis=2) > 128)


def badge_colour(image: Image.Image) -> np.ndarray:
    rgba = pixels(image)
    badge = (rgba[..., 3] == 255) & ~glyph_mask(image)
    return np.median(rgba[badge][:, :3], axis=0)


def whiteness(image: Image.Image) -> np.ndarray:
    """Per pixel inside the badge, 0 where it is the badge colour, 1 where it is white."""
    rgba = pixels(image).astype(np.float64)
    badge = badge_colour(image)
    darkest = int(np.argmin(badge))  # the channel with the most room between badge and white
    return np.clip((rgba[..., darkest] - badge[darkest]) / (255 - badge[darkest]), 0, 1)


def inner_disc(size: int) -> np.ndarray:
    """The badge's inside, away from its anti-aliased rim."""
    centre = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size]
    return np.hypot(x - centre, y - centre) < size / 2 - max(2, size / 16)


def fuzzy_share(image: Image.Image) -> float:
    """Of the pixels the glyph touches, the share that are half-tones rather than clean white
    or clean badge: a blurred glyph has many."""
    white = whiteness(image)[inner_disc(image.width)]
    touched = white > 0.12
    fuzzy = touched & (white < 0.88)
    return float(fuzzy.sum() / touched.sum())


# --- the files -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", STATES)
def test_png_has_its_size_and_a_transparent_background(state: str, size: int) -> None:
    image = load(ICONS / f"{state}-{size}.png")
    assert image.format == "PNG"
    assert image.mode == "RGBA"
    assert image.size == (size, size)
    alpha = pixels(image)[..., 3]
    last = size - 1
    assert [alpha[0, 0], alpha[0, last], alpha[last, 0], alpha[last, last]] == [0, 0, 0, 0]
    assert alpha[inner_disc(size)].min() == 255  # the badge itself is opaque


@pytest.mark.parametrize("state", STATES)
def test_ico_holds_each_png_as_drawn(state: str) -> None:
    frames = ico_frames(ICONS / f"{state}.ico")
    assert set(frames) == {(size, size) for size in SIZES}
    for size in SIZES:
        png = pixels(load(ICONS / f"{state}-{size}.png"))
        assert np.array_equal(pixels(frames[(size, size)]), png), f"{state}.ico at {size} px"


def test_app_icon() -> None:
    image = load(ICONS / "voice-agent.png")
    assert (image.format, image.mode, image.size) == ("PNG", "RGBA", (256, 256))
    assert pixels(image)[0, 0, 3] == 0
    frames = ico_frames(ICONS / "voice-agent.ico")
    assert {(size, size) for size in APP_ICO_SIZES} <= set(frames)
    assert np.array_equal(pixels(frames[(256, 256)]), pixels(image))


def test_checked_in_icons_match_what_the_script_draws(tmp_path: Path) -> None:
    """Pixels, not bytes: PNG encoders may differ while the picture does not."""
    subprocess.run(
        [sys.executable, str(MAKE_ICONS), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    drawn = sorted(path.name for path in tmp_path.iterdir())
    kept = sorted(path.name for path in ICONS.iterdir() if path.suffix in (".png", ".ico"))
    assert drawn == kept
    stale = "icons/ is out of date: run `python icons/make_icons.py` and commit the result"
    for name in drawn:
        if name.endswith(".png"):
            pairs = [(load(ICONS / name), load(tmp_path / name))]
        else:
            kept_frames, drawn_frames = ico_frames(ICONS / name), ico_frames(tmp_path / name)
            assert set(kept_frames) == set(drawn_frames), f"{name}: {stale}"
            pairs = [(kept_frames[size], drawn_frames[size]) for size in kept_frames]
        for kept_image, drawn_image in pairs:
            assert kept_image.size == drawn_image.size, f"{name}: {stale}"
            difference = np.abs(pixels(kept_image) - pixels(drawn_image)).max()
            assert difference <= 2, f"{name} ({kept_image.width} px): {stale}"


# --- how they look -------------------------------------------------------------------------


@pytest.mark.parametrize("state", STATES)
def test_16px_is_drawn_for_16px_not_scaled_down(state: str) -> None:
    small = load(ICONS / f"{state}-16.png")
    scaled = load(ICONS / f"{state}-64.png").resize((16, 16), Image.Resampling.LANCZOS)
    assert np.abs(pixels(small) - pixels(scaled)).mean() > 4
    # Crisp strokes: few half-tone pixels, and well under the scaled-down 64 px icon's share.
    assert fuzzy_share(small) < 0.3
    assert fuzzy_share(small) < 0.5 * fuzzy_share(scaled)
    # Mostly-opaque strokes: most of the glyph is fully white, not a pale wash.
    white = whiteness(small)[inner_disc(16)]
    assert (white > 0.95).sum() >= 0.6 * (white > 0.12).sum()
    assert (white > 0.95).sum() >= 6


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", STATES)
def test_every_size_shows_its_glyph(state: str, size: int) -> None:
    glyph_share = glyph_mask(load(ICONS / f"{state}-{size}.png"))[inner_disc(size)].mean()
    assert 0.06 < glyph_share < 0.5


@pytest.mark.parametrize("size", [16, 64])
def test_states_differ_in_colour(size: int) -> None:
    colours = {state: badge_colour(load(ICONS / f"{state}-{size}.png")) for state in STATES}
    for first, second in itertools.combinations(STATES, 2):
        distance = float(np.linalg.norm(colours[first] - colours[second]))
        assert distance > 50, f"{first} and {second} badges look alike at {size} px"


@pytest.mark.parametrize("size", [16, 64])
def test_states_differ_in_shape(size: int) -> None:
    """For colour-blind users: the glyphs themselves differ. (The badge is the same disc for
    every state, so the shape to compare is the white glyph's mask, not the alpha channel.)"""
    masks = {state: glyph_mask(load(ICONS / f"{state}-{size}.png")) for state in STATES}
    for first, second in itertools.combinations(STATES, 2):
        overlap = (masks[first] & masks[second]).sum() / (masks[first] | masks[second]).sum()
        assert overlap < 0.5, f"{first} and {second} glyphs overlap {overlap:.0%} at {size} px"


@pytest.mark.parametrize("size", [16, 64])
def test_states_differ_in_greyscale(size: int) -> None:
    """What a viewer with no colour vision sees still tells every pair apart."""
    greys = {
        state: np.asarray(load(ICONS / f"{state}-{size}.png").convert("L"), dtype=np.int32)
        for state in STATES
    }
    for first, second in itertools.combinations(STATES, 2):
        assert np.abs(greys[first] - greys[second]).mean() > 12, f"{first} vs {second}"


# --- agent.desktop.icons -------------------------------------------------------------------


def test_icons_dir_is_the_checkout_folder() -> None:
    assert icons.icons_dir() == ICONS


@pytest.mark.parametrize(
    ("asked", "given"), [(1, 16), (16, 16), (17, 20), (22, 24), (33, 48), (64, 64), (500, 64)]
)
def test_icon_path_picks_the_nearest_size_at_or_above(asked: int, given: int) -> None:
    for state in AgentState:
        assert icons.icon_path(state, asked) == ICONS / f"{state.value}-{given}.png"


def test_icon_image_is_loaded_once() -> None:
    image = icons.icon_image(AgentState.SPEAKING, 32)
    assert (image.mode, image.size) == ("RGBA", (32, 32))
    assert icons.icon_image(AgentState.SPEAKING, 32) is image
    assert icons.icon_image(AgentState.SPEAKING).size == (64, 64)
    assert icons.icon_image(AgentState.ERROR, 32) is not image


def test_ico_path() -> None:
    assert icons.ico_path() == ICONS / "voice-agent.ico"
    for state in AgentState:
        assert icons.ico_path(state) == ICONS / f"{state.value}.ico"
        assert icons.ico_path(state).is_file()


def test_installed_copy_is_found_without_a_checkout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(icons, "SOURCE_ICONS_DIR", tmp_path / "no-checkout" / "icons")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    installed = tmp_path / "prefix" / "share" / "voice-agent" / "icons"
    installed.mkdir(parents=True)
    for name in ("voice-agent.ico", "idle-16.png", "idle-32.png", "idle.ico"):
        shutil.copy(ICONS / name, installed / name)
    assert icons.icons_dir() == installed
    assert icons.icon_path(AgentState.IDLE, 20) == installed / "idle-32.png"
    assert icons.icon_path(AgentState.IDLE, 64) == installed / "idle-32.png"  # the largest
    assert icons.ico_path(AgentState.IDLE) == installed / "idle.ico"
    with pytest.raises(FileNotFoundError, match=r"error-<size>\.png"):
        icons.icon_path(AgentState.ERROR, 16)


def test_missing_icons_name_both_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "checkout" / "icons"
    source.mkdir(parents=True)  # a folder without our icons in it does not count
    monkeypatch.setattr(icons, "SOURCE_ICONS_DIR", source)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    with pytest.raises(FileNotFoundError) as raised:
        icons.icons_dir()
    message = str(raised.value)
    assert str(source) in message
    assert str(tmp_path / "prefix" / "share" / "voice-agent" / "icons") in message
    assert "make_icons.py" in message
