"""Sentences for measuring speech: short, common words, easy to check by ear or by an offline
recogniser. English, and a few in each of Kokoro's languages."""

from __future__ import annotations

import re
import unicodedata

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
