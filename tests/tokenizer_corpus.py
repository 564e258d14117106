"""A deterministic corpus of varied strings for the tokenizer-vs-llama.cpp tests.

Digits and numbers, punctuation, runs of white space (spaces, tabs, newlines,
carriage returns, no-break and ideographic spaces), contractions, Unicode from
many scripts (accents, combining marks, CJK, Arabic, Devanagari, emoji with
joiners), control-token look-alikes and quiz-like text.
"""

from __future__ import annotations

import random

WORDS = (
    "the of and to in is that it was for on are as with his they at be this from have or by one "
    "had not but what all were when we there can an your which their said if do will each about how "
    "up out them then she many some so these would other into has more her two like him see time "
    "could no make than first been its who now people my made over did down only way find use may "
    "water long little very after words called just where most know proof work block chain miner "
    "nonce hash difficulty target inference quiz answer model token Paris France Ethereum Bitcoin"
).split()

UNICODE = (
    "café", "naïve", "résumé", "Zürich", "façade", "São Paulo", "Ångström", "ﬁnance", "Æsir",
    "straße", "İstanbul", "Łódź", "Čeština", "Ελληνικά", "Россия", "Київ", "עברית", "العربية",
    "हिन्दी", "বাংলা", "தமிழ்", "ไทย", "ລາວ", "한국어", "日本語", "中文字符", "カタカナ", "ひらがな",
    "e\u0301", "a\u0308o\u0308", "\u0915\u094d\u0937", "Ⅻ", "½", "²³", "٣٤٥", "१२३", "〇",
    "🙂", "👍🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "∑∫√", "→⇒", "€£¥₿", "©®™", "…", "—", "–", "“quoted”",
    "‘single’", "«guillemets»", "¿Qué?", "¡Hola!", "Ω", "µ", "ℕ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟙𝟚𝟛", "\u200b",
    "\u00ad", "\ufeff", "\u2060", "\U0001F600", "\u0000", "\u007f", "\u0085",
)

SPACES = (" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\t\t", " \t ", "\u00a0", "\u3000",
          "\u2003", "\u2009 ", "\u202f", "\u1680", "\u2028", "\u000b", "\u000c", "    ")

PUNCT = tuple(".,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`") + (
    "...", "!!", "?!", "--", "->", "=>", "::", "//", "/*", "*/", "''", "``", "\"\"", "#!/", "&&", "||",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "</s>", "<s>", "<unk>", "<0x41>", "[INST]",
)

CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "n't", "'x", "'")

QUIZ = (
    "Quiz 17: What is 2 + 2? Answer with one word.",
    "Block 000123 | tip 0x3fa9c2e1 | miner 0x52908400098527886E0F7030069857D2E4169EE7 | nonce 42",
    "Q: Which planet is known as the Red Planet?\nA:",
    "Complete the sequence: 3, 1, 4, 1, 5, 9, 2, 6, ...",
    "Translate to French: 'The cat sleeps on the mat.'",
    "Solve for x: 3x - 7 = 11. Show your steps.",
    "If a train leaves at 09:45 and arrives at 13:10, how long is the trip?",
    "salt=9f86d081884c7d659a2feaa0c55ad015 prompt#0007: Describe the colour of the sky.",
)


def _number(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:
        return str(rng.randrange(10))
    if kind == 1:
        return str(rng.randrange(10 ** rng.randrange(2, 12)))
    if kind == 2:
        return f"{rng.randrange(10000)}.{rng.randrange(1000):03d}"
    if kind == 3:
        return f"{rng.randrange(1, 10**6):,}"
    if kind == 4:
        return hex(rng.getrandbits(rng.choice((8, 32, 64, 160))))
    return f"-{rng.randrange(100)}e{rng.randrange(-9, 10)}"


def _piece(rng: random.Random) -> str:
    kind = rng.randrange(10)
    if kind <= 2:
        w = rng.choice(WORDS)
        return rng.choice((w, w.capitalize(), w.upper()))
    if kind == 3:
        return _number(rng)
    if kind == 4:
        return rng.choice(PUNCT)
    if kind == 5:
        return rng.choice(SPACES)
    if kind == 6:
        return rng.choice(UNICODE)
    if kind == 7:
        return rng.choice(WORDS) + rng.choice(CONTRACTIONS)
    if kind == 8:
        return rng.choice(QUIZ)
    return "".join(chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0xA0, 0x3000),
                                   rng.randrange(0x1F300, 0x1FAFF))))
                   for _ in range(rng.randrange(1, 6)))


def corpus(n: int = 2400, seed: int = 20261124) -> list[str]:
    """``n`` strings: fixed edge cases first, then random compositions."""
    rng = random.Random(seed)
    fixed = [
        "", " ", "  ", "\n", " \n ", "a", " a", "a ", "  a", "a  ", "a  b", "a\n\nb", "1", "12", " 123",
        "1 2 3", "a1b2", "x²", "3.14159", "1,000,000", "don't", "I'm", "we'll", "they've", "it's",
        "'s", "''s", "Hello, world!", "Hello world", " Hello", "\tindent", "trailing   ", "   leading",
        "<|im_start|>user\nhi<|im_end|>", "caf\u00e9", "cafe\u0301", "日本語のテキスト", "🙂🙂🙂",
        "a\u00a0b", "a\u3000b", "a\u2028b", "\r\n\r\n", "word.\n\nNext", "x = y + 2 * (z - 1)",
    ]
    out = list(fixed)
    while len(out) < n:
        out.append("".join(_piece(rng) for _ in range(rng.randrange(1, 12))))
    return out


# Characters where the pre-tokenizers differ: contraction letters in both cases,
# every kind of white space, ASCII punctuation and symbols, digits of several
# scripts, the code points deepseek-llm's literal classes name or just miss
# (U+3000, fullwidth forms, U+2018-U+201F), combining marks, lookalikes whose
# lowercase is ASCII (U+0130, U+212A), controls.
EDGE_CHARS = tuple("aAzZsStTmMdDrReEvVlL'\u2019 \t\n\r\x0b\x0c0123456789") + tuple(
    ".,;:!?$+<=>^~|`-_/\\\"#%&*()[]{}@") + (
    "\u3000", "\u00a0", "\u2028", "\u0085", "\u1680", "\u00e9", "\u00df", "\u01c5", "\u65e5", "\u672c",
    "\uac00", "\u0800", "\uff76", "\uff01", "\uff0f", "\uff5e", "\u2018", "\u201f", "\u3002", "\u3001",
    "\u0663", "\u0967", "\u00bd", "\u216b", "\u00b2", "\u0301", "\u0308", "\u20ac", "\u00a9", "\u2192",
    "\U0001F642", "\u200b", "\ufeff", "\u0130", "\u212a", "\u2126", "\u00b5", "\U0001D7D9", "\U00010400",
    "\x00", "\x1c", "\x1f", "\x7f", "\u00ab", "\u00bb", "\u2014", "\u2026", "\u00bf", "\u00b7", "\u055a",
    "\u00ad",
)
EDGE_RUNS = ("'ll", "'RE", "'Ve", " 12345", " \n\n ", "\r\n", "   x", "1234567", "  ", "\t\t\n")


def edge_corpus(n: int = 3000, seed: int = 7) -> list[str]:
    """``n`` short strings dense in :data:`EDGE_CHARS` and :data:`EDGE_RUNS`."""
    rng = random.Random(seed)
    return ["".join(rng.choice(EDGE_CHARS) if rng.random() < 0.8 else rng.choice(EDGE_RUNS)
                    for _ in range(rng.randrange(1, 25)))
            for _ in range(n)]
