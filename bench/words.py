"""The words of the benchmark conversation: what the simulated people say, in which order.

Every user message carries its own instruction for the scripted model (`#plain 17 …`, see
bench/script.py) and every reply names the turn it answers (`re 17`), so drivers can check
per-agent order. Kept free of test-server imports: the footprint child imports it.
"""

from __future__ import annotations

import itertools
import random
import re

KINDS = ("plain", "core", "archive", "search")
BLOCK = 20  # the mix is exact in every block of 20 turns: 14 plain, 2 of each other kind
_MIX = ["plain"] * 14 + ["core", "core", "archive", "archive", "search", "search"]

# A vocabulary shaped like conversation: a Zipf-distributed draw over 5,000 words. The first
# ~400 are everyday English (function words first, in most messages), the long tail is made-up
# words standing for names and rare words; about 70% of what is said is English, which keeps
# the tokenizer's work close to real chat (made-up words cost it about twice as much per
# character).
_COMMON = """the and to of a I you it in that is was me my we so for on with have be this but not
are they at just like what do your can all if about he she there out one up get know no go think
how when really yeah will time good her him would well day today night week weekend morning
evening work home friend friends family sister brother mother father kids dog cat garden house
room kitchen dinner lunch breakfast coffee tea food pasta soup bread cake pizza market shop city
town trip holiday beach sea river lake mountain hike walk run bike car train bus ticket plane
flight hotel book books read reading music song songs guitar piano concert band movie film show
series episode game games football tennis chess school class teacher lesson exam test project
meeting office job boss team email phone call message birthday party wedding gift present plan
plans idea ideas story stories news weather rain snow sun summer winter spring autumn cold warm
hot tired happy sad busy glad sorry worried excited nervous angry calm quiet loud early late soon
again still already maybe probably sure thanks thank please okay great nice fine bad best better
love loved hate want wanted need needed try tried make made take took give gave see saw look
looked feel felt said say tell told ask asked talk talked remember forgot learn learned cook
cooked clean cleaned buy bought sell paid pay money rent bill doctor hospital sick better health
sleep slept dream dreams paint painting photo photos picture camera travel visit visited museum
park tree flowers roses tomato tomatoes basil lemon apple orange fruit vegetables salad recipe
dish oven bake baked fish chicken rice beans cheese wine beer water juice milk sugar salt garden
neighbour neighbours cousin uncle aunt grandma grandpa baby puppy kitten vet class course
university degree thesis paper report deadline interview career startup company client clients
code coding computer laptop bug server website app design draft chapter novel poem poetry
language spanish french german japanese lesson practice gym yoga swim swimming marathon race
climbing climb rope tent camping fishing boat island ocean wave waves storm wind cloud clouds
moon stars sky light dark window door key keys car garage street road bridge station airport"""
_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "da", "fe", "gi", "ho",
              "ju", "pa", "re", "si", "tu", "wo", "ze", "mar", "len", "dor", "kin", "tas")


def _vocabulary(size: int = 5_000) -> list[str]:
    rng = random.Random(11)
    words = list(dict.fromkeys(_COMMON.split()))
    seen = set(words)
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3, 3, 4))))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


WORDS = _vocabulary()
_CUMULATIVE = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(WORDS))))  # Zipf


def sentence(rng: random.Random, words: int = 12) -> str:
    """Words drawn by Zipf's law over the vocabulary, as a sentence."""
    return " ".join(rng.choices(WORDS, cum_weights=_CUMULATIVE, k=words)).capitalize() + "."


def query(rng: random.Random, words: int = 2) -> str:
    """A search the way a model writes one: a few content words (not function words)."""
    return " ".join(rng.choice(WORDS[60:3_000]) for _ in range(words))


def kinds(turns: int, seed: int = 7) -> list[str]:
    """The kind of each turn: the 70/10/10/10 mix, shuffled per block with a fixed seed."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < turns:
        block = list(_MIX)
        rng.shuffle(block)
        out += block
    return out[:turns]


def user_text(kind: str, seq: int, rng: random.Random) -> str:
    """A user message that tells the scripted model what to do with it."""
    return f"#{kind} {seq} {sentence(rng)}"


def reply_seq(reply: str) -> int | None:
    """The turn number a scripted reply answers."""
    found = re.match(r"re (\d+):", reply)
    return int(found.group(1)) if found else None
