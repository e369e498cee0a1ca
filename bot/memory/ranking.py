"""Query analysis and score fusion for recall search (pure functions, no I/O).

Measured on LoCoMo (docs/memory-eval.md): dropping function words from the keyword query, letting
a message borrow score from the turns around it, a dense (embedding) score, a prior for the person
the question names and a boost for dates the question names each add recall; none needs an LLM.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 64

# A standard English function-word list (articles, pronouns, auxiliaries, prepositions, question
# words). Chosen as a general list, not from any evaluation questions; other languages pass through.
_STOP_TEXT = """
a about above after again against all am an and any are as at be because been before being below
between both but by can could did do does doing down during each few for from further had has have
having he her here hers herself him himself his how i if in into is it its itself just me more most
my myself no nor not now of off on once only or other our ours ourselves out over own same she
should so some such than that the their theirs them themselves then there these they this those
through to too under until up very was we were what when where which while who whom why will with
would you your yours yourself yourselves s t d ll m re ve
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())

# Weights of a message's own score and of its neighbours 1 and 2 turns away. A reply often answers
# without repeating the question's words ("Researching adoption agencies" after "What's up?"), so
# a turn inherits part of the score of the exchange around it. Chosen once, early, from
# (1, 0.2), (1, 0.35), (1, 0.5), (1, 0.35, 0.2); the curve is flat around it (see the eval notes).
NEIGHBOUR_KERNEL = (1.0, 0.35, 0.2)
DENSE_WEIGHT = 1.0  # cosine in [0, 1] next to BM25 scaled to [0, 1] by the best hit: equal say
SPEAKER_PRIOR = 1.2  # a question naming one participant is usually about what they said
DATE_BOOST = 0.5  # a message from a day (or month) the question names
DAY_SLACK = 2  # days either side of a named day: time zones, "yesterday" told the next day


def words(text: str) -> list[str]:
    return list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))


def query_terms(text: str) -> list[str]:
    """The query's distinct words without function words (all of them if nothing else is left)."""
    found = words(text)
    content = [w for w in found if w not in STOP_WORDS]
    return (content or found)[:MAX_TERMS]


def fts_match(tag: str, terms: list[str]) -> str:
    """A safe FTS5 expression: any of the terms in what was said, in one agent's messages only.

    Names match the text (someone addressed by name), not the sender column: a participant's name
    as sender matched half a two-person history, which cost BM25 time and ranked nothing (the
    speaker prior does that job)."""
    quoted = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
    return f'agent_tag:"{tag}" AND text:({quoted})'


def smooth(scores: np.ndarray, kernel: tuple[float, ...] = NEIGHBOUR_KERNEL) -> np.ndarray:
    """Each position plus weighted copies of its neighbours' scores (a symmetric convolution)."""
    out = kernel[0] * scores
    for distance, weight in enumerate(kernel[1:], start=1):
        if distance >= len(scores):
            break
        out[distance:] += weight * scores[:-distance]
        out[:-distance] += weight * scores[distance:]
    return out


def spread(mask: np.ndarray, reach: int = len(NEIGHBOUR_KERNEL) - 1) -> np.ndarray:
    """Positions within `reach` of a marked position (the context that smoothing lets in)."""
    out = mask.copy()
    for distance in range(1, min(reach, len(mask) - 1) + 1):
        out[distance:] |= mask[:-distance]
        out[:-distance] |= mask[distance:]
    return out


def named_participant(query: str, names: list[str | None]) -> int | None:
    """Index of the one participant whose first name the query mentions, if exactly one is."""
    said = set(words(query))
    hits = [
        i for i, name in enumerate(names)
        if name and (first := words(name)[:1]) and len(first[0]) > 1 and first[0] in said
    ]
    return hits[0] if len(hits) == 1 else None


# --- dates named in a query -----------------------------------------------------------------

_MONTHS = [name.lower() for name in calendar.month_name[1:]]
_MONTH = (r"(January|February|March|April|May|June|July|August|September|October|November|"
          r"December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)\.?")
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(\d{4})"
# Month names must be capitalised, as dates are written, so "you may" is not May.
_PATTERNS = (
    re.compile(rf"\b{_MONTH}\s+{_DAY}(?:,?\s+{_YEAR})?\b"),  # May 23, 2023 · May 23
    re.compile(rf"\b{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?\b"),  # 23 May 2023
    re.compile(rf"\b{_MONTH},?\s+{_YEAR}\b"),  # May 2023
    re.compile(rf"\b(?:in|during|since|by|of|last|early|late|mid-?)\s+{_MONTH}\b"),  # in June
    re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b"),  # 2023-05-23
)


@dataclass(frozen=True)
class DateCue:
    """A day or a month the query names; year None means that month in any year."""

    year: int | None
    month: int
    day: int | None


def _month(name: str) -> int:
    key = name.lower().rstrip(".")
    return next(i for i, m in enumerate(_MONTHS, start=1) if m.startswith(key[:3]))


def _cue(kind: int, groups: tuple[str | None, ...]) -> DateCue | None:
    if kind == 4:  # ISO
        year, month, day = (int(g or 0) for g in groups)
    else:
        padded = (*groups, None, None)
        name, day_text, year_text = {
            0: padded[:3], 1: (padded[1], padded[0], padded[2]), 2: (padded[0], None, padded[1]),
        }.get(kind, (padded[0], None, None))
        month, year = _month(name or ""), int(year_text or 0)
        day = int(day_text or 0)
    if not 1 <= month <= 12 or not 0 <= day <= 31:
        return None
    return DateCue(year or None, month, day or None)


def date_cues(query: str) -> list[DateCue]:
    cues: list[DateCue] = []
    taken: list[tuple[int, int]] = []
    for kind, pattern in enumerate(_PATTERNS):
        for match in pattern.finditer(query):
            if any(a < match.end() and match.start() < b for a, b in taken):
                continue  # "May 23, 2023" already read; don't read "May 2023" inside it again
            cue = _cue(kind, match.groups())
            if cue is not None:
                taken.append(match.span())
                cues.append(cue)
    return cues


def date_mask(cues: list[DateCue], days: np.ndarray, years: np.ndarray, months: np.ndarray
              ) -> np.ndarray:
    """Messages (by local date ordinal, year and month) that fall on a named day or month."""
    mask = np.zeros(len(days), dtype=bool)
    for cue in cues:
        if cue.day is None:
            hit = months == cue.month
            if cue.year is not None:
                hit &= years == cue.year
            mask |= hit
            continue
        for year in [cue.year] if cue.year else sorted(set(years.tolist())):
            try:
                target = date(year, cue.month, cue.day).toordinal()
            except ValueError:
                continue
            mask |= np.abs(days - target) <= DAY_SLACK
    return mask
