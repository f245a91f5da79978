"""Texts where tokenizers and padding go wrong: accents, CJK and emoji, odd spacing, empty, one letter, 600+ tokens."""

LONG_TEXT = " ".join(["The committee reviewed the quarterly numbers again and again."] * 80)  # past 512 tokens

HARD_TEXTS = [
    "I love this.",
    "The service was terrible, and the food arrived cold after an hour.",
    "Café au lait at the Hôtel — naïve façade, déjà vu!",
    "東京 and 北京 are big cities 🌸🚀",
    "tokenization  with   odd\tspacing\nand newlines",
    "",
    "a",
    "Unbelievably overcomplicated counterrevolutionaries reconsidered.",
    LONG_TEXT,
]
