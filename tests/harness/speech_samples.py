"""English sentences for measuring speech: short, common words, easy to check by ear or by
an offline recogniser."""

SENTENCES = [
    "The weather today is sunny with a light breeze from the west.",
    "Please remind me to call my sister at five o'clock this evening.",
    "Computers can read text aloud using neural speech synthesis.",
    "I would like a cup of coffee and a slice of chocolate cake.",
    "The train to the city leaves every twenty minutes on weekdays.",
    "Turn off the lights in the kitchen before you go to bed.",
]
