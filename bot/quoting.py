"""Text people wrote, shown to the model as quoted data that cannot pose as instructions.

Core memory, the conversation summary and the summarizer's transcript hold words members wrote
(or what a model kept of them). Each is framed by a tag (`<core_memory>`, `<summary>`,
`<transcript>`, one per core block) that the prompts call data, never instructions. Text inside
a frame must not be able to end the frame early and go on as if it were the system: every
tag-like `<name` or `</name` in it is neutralised (its bracket becomes `&lt;`), also when
written with a look-alike bracket or slash (full-width, angle quotation marks …) or with
invisible characters in front of the name. Any tag is neutralised, not only the frames' names:
a name can be spelt with look-alike letters (Cyrillic `а` for `a`), which no list would catch.
"""

from __future__ import annotations

import re

ESCAPED_BRACKET = "&lt;"
# "<" and characters a reader (or a model) takes for it.
_BRACKETS = "<\uff1c\ufe64\u2329\u3008\u27e8\u2039\u276e\u02c2\u1438\u16b2"
_SLASHES = "/\uff0f\u2044\u2215\u29f8"
_INVISIBLE = "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e" \
    "\u2060-\u206f\ufeff"
_TAG_START = re.compile(
    f"[{_BRACKETS}](?=[\\s{_INVISIBLE}]*(?:[{_SLASHES}][\\s{_INVISIBLE}]*)?[^\\W\\d_])"
)


def neutralise(text: str) -> str:
    """The text with every tag-like opening neutralised; everything else unchanged."""
    return _TAG_START.sub(ESCAPED_BRACKET, text)


def framed(tag: str, text: str, attributes: str = "") -> str:
    """Text inside `<tag …>` … `</tag>`, unable to close the frame itself."""
    opening = f"<{tag} {attributes}>" if attributes else f"<{tag}>"
    return f"{opening}\n{neutralise(text)}\n</{tag}>"


def original_of(shown: str, value: str) -> str | None:
    """The part of value that the model saw (neutralised) as `shown`, if any: lets the model
    edit core memory by quoting what it sees."""
    if ESCAPED_BRACKET not in shown:
        return None
    parts = [re.escape(piece) for piece in shown.split(ESCAPED_BRACKET)]
    pattern = f"(?:{re.escape(ESCAPED_BRACKET)}|[{_BRACKETS}])".join(parts)
    found = re.search(pattern, value)
    return found.group(0) if found else None
