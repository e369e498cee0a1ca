"""Splitting a reply at Discord's 2,000-character limit (issue 10, defect 5).

Discord refuses a message whose content is longer than 2,000 characters with 400/50035
(discord/discord-api-docs docs/resources/Message.md, "Create Message": content "up to 2000
characters"). Every chunk must fit, including the fence lines added to close and reopen a code
block that a cut falls inside, and including room reserved for a mention in front of the first.

The fence model here is written independently of bot/discordbot/rendering.py: a line whose
first non-blank characters are three or more backticks opens or closes a code block.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bot.discordbot.rendering import MESSAGE_LIMIT, split_message

FENCE_LINE = re.compile(r"^\s*```")


def fence_lines(chunk: str) -> int:
    return sum(1 for line in chunk.split("\n") if FENCE_LINE.match(line))


def words(alphabet: str = "abcxyz") -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=1, max_size=14)


FRAGMENTS = st.one_of(
    words(),
    words(),
    st.just(" "),
    st.just("\n"),
    st.just("\n\n"),
    st.sampled_from(["```", "```typescript", "```python", "````", "```c++", " ```", "``"]),
    st.integers(1, 200).map(lambda n: "```" + "t" * n),  # a long info string
    st.integers(100, 4500).map(lambda n: "w" * n),  # a word longer than a message
    st.integers(100, 2500).map(lambda n: " " * n),
    st.integers(1, 2200).map(lambda n: "x" * n),
)


def replies(max_fragments: int = 300) -> st.SearchStrategy[str]:
    """Replies mixing prose, newlines, code fences (short and long info strings), words longer
    than a message and long runs of spaces: what pushes a fence line onto a chunk boundary."""
    return st.lists(FRAGMENTS, max_size=max_fragments).map("".join)


LINE_AT_BOUNDARY = "x" * 1984 + "\n```typescript\ncode line\n```\nafter"
LONG_CODE = "```typescript\n" + "y" * 3000 + "\n```"  # reopened under a long info string
MANY_FENCES = "\n".join(["intro", "```typescript", *["const x = 1;" * 12] * 60, "```", "end"])


def check_chunks(text: str, chunks: list[str], limit: int, reserve: int = 0) -> None:
    assert all(len(c) <= limit for c in chunks), [len(c) for c in chunks]
    if chunks:
        assert len(chunks[0]) + reserve <= limit, len(chunks[0])
    assert all(fence_lines(c) % 2 == 0 for c in chunks), [fence_lines(c) for c in chunks]
    # Every visible character of the text is there, in order (the chunks add only fence lines;
    # test_joining_the_chunks_... checks the exact text).
    shown = iter("".join("".join(chunks).split()))
    assert all(char in shown for char in "".join(text.split()))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=replies(), limit=st.sampled_from([MESSAGE_LIMIT, MESSAGE_LIMIT, 200, 333, 1000]),
       reserve=st.sampled_from([0, 0, 24]))
@example(text=LINE_AT_BOUNDARY, limit=MESSAGE_LIMIT, reserve=0)
@example(text=LONG_CODE, limit=MESSAGE_LIMIT, reserve=0)
@example(text=MANY_FENCES, limit=MESSAGE_LIMIT, reserve=0)
def test_every_chunk_fits_and_renders_its_fences_balanced(text: str, limit: int,
                                                          reserve: int) -> None:
    check_chunks(text, split_message(text, limit, reserve=reserve), limit, reserve)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=replies(), limit=st.sampled_from([MESSAGE_LIMIT, 200, 333]),
       reserve=st.sampled_from([0, 24]))
@example(text=LINE_AT_BOUNDARY, limit=MESSAGE_LIMIT, reserve=0)
@example(text=LONG_CODE, limit=MESSAGE_LIMIT, reserve=0)
def test_joining_the_chunks_minus_added_fence_lines_gives_back_the_text(
    text: str, limit: int, reserve: int
) -> None:
    from bot.discordbot.rendering import split_parts

    parts = split_parts(text, limit, reserve=reserve)
    assert "".join(p.body for p in parts) == text.strip()
    assert [p.rendered for p in parts] == split_message(text, limit, reserve=reserve)
    for index, part in enumerate(parts):
        assert part.rendered == part.reopen + part.body + part.close
        assert part.body  # never an empty message
        # What is added is a fence line and nothing else: a reopening fence (never on the
        # first chunk) and a bare closing fence.
        assert part.reopen == "" or re.fullmatch(r"```+\S*\n", part.reopen)
        assert index > 0 or part.reopen == ""
        assert part.close in ("", "```", "\n```")
        assert part.close != "```" or part.body.endswith("\n")


@pytest.mark.parametrize(("text", "sizes"), [
    (LINE_AT_BOUNDARY, [1985, 33]),  # was [2002, 33]
    (LONG_CODE, [1981, 1055]),  # was [17, 2002, 1034]
])
def test_targeted_boundaries(text: str, sizes: list[int]) -> None:
    chunks = split_message(text)
    check_chunks(text, chunks, MESSAGE_LIMIT)
    assert [len(c) for c in chunks] == sizes


def test_a_short_reply_is_one_chunk_and_blank_is_none() -> None:
    assert split_message("  hello  ") == ["hello"]
    assert split_message(" \n ") == []
    assert split_message("x" * 2000) == ["x" * 2000]
    assert [len(c) for c in split_message("x" * 2000, reserve=24)] == [1963, 37]


def test_the_cut_prefers_a_line_then_a_word() -> None:
    text = "a" * 1500 + "\n" + "b " * 400
    first, second = split_message(text)
    assert first == "a" * 1500 + "\n" and second.startswith("b b")
    words_only = ("word " * 600).strip()
    assert all(not c.startswith(" ") and c.strip("word ") == "" for c in split_message(
        words_only))
