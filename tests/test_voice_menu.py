"""The tray's Voice menu, built by the real Tray from a catalogue of voices and read back
through pystray's own menu objects (what its GTK backend turns into widgets); and the
assistant reporting the voice that actually speaks. The menu driven for real (a click that
changes the next speech, a sample heard in another voice) is in test_desktop.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from agent.desktop import commands as cmd
from agent.desktop.tray import FETCH_HINT, Tray, TrayModel
from agent.tts import voices as catalogue
from agent.tts.base import VoiceInfo

PACKAGED = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")


@pytest.fixture(scope="module")
def pystray() -> Iterator[Any]:
    """pystray's menu classes, whatever backend it picks (no display is needed to read menus)."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PYSTRAY_BACKEND", "dummy")  # only if this process has not imported it yet
        import pystray

    yield pystray


def infos(names: tuple[str, ...], origin: str = "npm") -> tuple[VoiceInfo, ...]:
    return tuple(VoiceInfo(n, catalogue.language_of(n), catalogue.gender_of(n), True, origin)
                 for n in names)


def voice_menu(pystray: Any, voice: str, names: tuple[str, ...] = catalogue.OFFICIAL_VOICES,
               ) -> tuple[Any, list[cmd.Command]]:
    """The Voice item of a real tray's menu, and the list its items post commands to."""
    posted: list[cmd.Command] = []
    tray = Tray(posted.append, TrayModel(voice=voice, voices=infos(names)))
    found = [i for i in tray._menu(pystray) if i.text.startswith("Voice")]
    assert len(found) == 1
    return found[0], posted


def dump(pystray: Any, menu: Any, depth: int = 0) -> list[str]:
    """The menu as text: "(•)" a checked radio item, "( )" an unchecked one, "~" disabled,
    "▸" a submenu (its items follow, indented), "----" a separator."""
    lines = []
    for item in menu:
        pad = "    " * depth
        if item is pystray.Menu.SEPARATOR:
            lines.append(pad + "----")
            continue
        mark = "" if item.checked is None else "(•) " if item.checked else "( ) "
        lines.append(f"{pad}{mark}{'' if item.enabled else '~'}{item.text}"
                     f"{' ▸' if item.submenu else ''}")
        if item.submenu:
            lines += dump(pystray, item.submenu, depth + 1)
    return lines


def walk(menu: Any) -> Iterator[Any]:
    for item in menu:
        yield item
        if item.submenu:
            yield from walk(item.submenu)


def submenu(menu: Any, text: str) -> Any:
    found = [i for i in menu if i.text == text]
    assert found, f"no {text!r} in {[i.text for i in menu]}"
    return found[0].submenu


def test_all_voices_are_grouped_by_language_then_female_and_male(
        pystray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for code, language in catalogue.LANGUAGES.items():  # labels as if all were understood
        monkeypatch.setitem(catalogue.LANGUAGES, code, replace(language, understood=True))
    item, _ = voice_menu(pystray, "bf_emma")
    assert item.text == "Voice: Emma (bf_emma)"
    languages = [i.text for i in item.submenu]
    assert languages == ["American English", "British English  ✓", "Spanish", "French",
                         "Hindi", "Italian", "Japanese", "Brazilian Portuguese",
                         "Mandarin Chinese"]  # LANGUAGES' order; ✓: the current voice's
    british = dump(pystray, submenu(item.submenu, "British English  ✓"))
    assert british[:10] == [
        "~Female",
        "( ) Alice (bf_alice)", "(•) Emma (bf_emma)", "( ) Isabella (bf_isabella)",
        "( ) Lily (bf_lily)",
        "----",
        "~Male",
        "( ) Daniel (bm_daniel)", "( ) Fable (bm_fable)", "( ) George (bm_george)"]
    assert british[10:13] == ["( ) Lewis (bm_lewis)", "----", "Hear a sample ▸"]
    checked = [i.text for i in walk(item.submenu) if i.checked]
    assert checked == ["Emma (bf_emma)"]  # one voice checked in the whole menu
    every = {i.text for i in walk(item.submenu) if i.checked is not None}
    assert len(every) == 54
    assert FETCH_HINT not in {i.text for i in item.submenu}  # nothing left to fetch


def test_choosing_posts_set_voice_and_a_sample_posts_preview_only(pystray: Any) -> None:
    item, posted = voice_menu(pystray, "af_heart")
    french = submenu(item.submenu, "French")
    [siwis] = [i for i in french if i.text == "Siwis (ff_siwis)"]
    siwis(None)
    samples = submenu(french, "Hear a sample")
    assert dump(pystray, samples) == ["~Female", "Siwis (ff_siwis)"]  # one French voice
    [sample] = [i for i in samples if i.enabled]
    sample(None)
    assert posted == [cmd.SetVoice("ff_siwis"), cmd.PreviewVoice("ff_siwis")]
    assert all(i.checked is None for i in walk(samples))  # hearing is not choosing


def test_a_language_whisper_finds_hard_to_understand_says_so(
        pystray: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(catalogue.LANGUAGES, "h",
                        replace(catalogue.LANGUAGES["h"], understood=False))
    monkeypatch.setitem(catalogue.LANGUAGES, "i",
                        replace(catalogue.LANGUAGES["i"], understood=True))
    item, _ = voice_menu(pystray, "hf_alpha")
    labels = [i.text for i in item.submenu]
    assert "Hindi (hard to understand)  ✓" in labels
    assert "Italian" in labels


def test_a_blend_is_shown_checked_at_the_top_and_its_voices_stay_choosable(
        pystray: Any) -> None:
    item, posted = voice_menu(pystray, "af_bella:0.7,af_sky:0.3")
    assert item.text == "Voice: af_bella 70% + af_sky 30%"
    top = list(item.submenu)
    assert (top[0].text, top[0].checked, top[1]) == (
        "Blend: af_bella 70% + af_sky 30%", True, pystray.Menu.SEPARATOR)
    assert [i.text for i in walk(item.submenu) if i.checked] == [top[0].text]
    american = submenu(item.submenu, "American English")  # no ✓: no single voice is current
    [sky] = [i for i in american if i.text == "Sky (af_sky)"]
    sky(None)
    assert posted == [cmd.SetVoice("af_sky")]


def test_with_only_the_packaged_voices_the_menu_is_flat_and_says_how_to_get_more(
        pystray: Any) -> None:
    item, _ = voice_menu(pystray, "jm_kumo", PACKAGED)
    assert dump(pystray, item.submenu) == [
        "~Japanese, female",
        "( ) Alpha (jf_alpha)", "( ) Gongitsune (jf_gongitsune)", "( ) Nezumi (jf_nezumi)",
        "( ) Tebukuro (jf_tebukuro)",
        "----",
        "~Japanese, male",
        "(•) Kumo (jm_kumo)",
        "----",
        "Hear a sample ▸",
        "    ~Female",
        "    Alpha (jf_alpha)", "    Gongitsune (jf_gongitsune)", "    Nezumi (jf_nezumi)",
        "    Tebukuro (jf_tebukuro)",
        "    ----",
        "    ~Male",
        "    Kumo (jm_kumo)",
        "----",
        f"~{FETCH_HINT}"]


def test_before_the_voices_are_known_the_configured_voice_is_shown(pystray: Any) -> None:
    item, _ = voice_menu(pystray, "af_bella", ())
    assert dump(pystray, item.submenu) == ["(•) Bella (af_bella)"]


def test_the_assistant_reports_the_voice_that_actually_speaks(
        engine, packaged_only_engine) -> None:  # type: ignore[no-untyped-def]
    """The tray and the overlay show what set_voice returns: a voice whose pack is missing
    is spoken (and shown) as the fallback, not as the name asked for."""
    from agent.assistant import Assistant
    from agent.audio.sinks import MemorySink
    from agent.config import Config
    from agent.speech import SpeechPipeline

    for synth, expected in ((engine, "af_bella"), (packaged_only_engine, "jm_kumo")):
        assistant = Assistant(Config())
        assistant.speech = SpeechPipeline(synth, MemorySink(), voice="jm_kumo")
        assert assistant.set_voice("af_bella") == expected
        assert assistant.speech.voice == expected
        assert assistant.cfg.tts.voice == "af_bella"  # what the user asked for is kept
        listed = {info.name for info in assistant.voices()}
        assert ("af_bella" in listed) is (expected == "af_bella")
