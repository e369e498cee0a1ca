"""Who a piece of stored text is about, for erasing one person (`/forget-me`).

The rule (README "What /forget-me erases" says the same):

* A person's own messages are found by their user id (the `sender_id` column), never by name.
* Anything else (core-memory lines, archival passages, summary sentences, the agent's replies
  and function calls, outbox texts, checkpoints) is erased only when its *said text* names them:
  what a person or the agent wrote — message text, passage text, one core-memory line, the
  string values of a function call's arguments, a function's output message — never the JSON
  envelope around it, field names, function names or timestamps.
* Naming means their user id as a whole token (a Discord mention `<@id>` included), or one of
  the names they used as a whole name, case-insensitively ("Al" does not match "also").
* A name alone is only trusted when it is distinctive: at least MIN_NAME_CHARS characters, not
  the agent's own name, and (for a one-word name) not a common English word or a word of the
  bot's own wrappers (COMMON_WORDS). A member called "OK", "message", "UTC", "PM" or "Will" is
  then found by their id only; the person is told which of their names were not searched.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bot.messages import unpack_tool_result

MIN_NAME_CHARS = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"\w+")

# Words that are also (nick)names: a name among them matches only together with the id. Kept
# short on purpose: function words, chat words, time words, words of the bot's own JSON
# envelopes and tool results, and given names that are everyday words.
_COMMON = """
a about after again all also am an and any are as at away back be because been before being
best both but by can cannot could day did do does done down each even ever every few first for
from full get give go going good got great had has have he her here hers him his how i if in
into is it its just keep last let like little long look made make many may me might mine more
most much must my never new next no none nor not nothing now of off often old on once one only
or other our out over own part please put same see she should since so some soon still such
sure take than that the their them then there these they thing things this those though three
through to today too two under until up upon us very was way we well were what when where which
while who whom why will with within without would yes yet you your yours
hi hello hey bye ok okay thanks thank sorry lol yeah nope cool nice welcome everyone someone
anyone nobody somebody people person friend friends bot admin mod here there
message messages user users name names time type status failed error reason system alert login
heartbeat function tool tools assistant send reply core memory archival recall human persona
summary note notes search page true false null text content data id ids role kind event
am pm utc gmt est pst cet now today tomorrow yesterday morning evening night week month year
monday tuesday wednesday thursday friday saturday sunday january february march april june july
august september october november december
will may mark bill grace hope joy faith rose summer winter autumn spring april june august
patience honor chance art rich sky river stone dawn max ray guy sue pat
red blue green black white gray grey gold silver pink
"""
COMMON_WORDS = frozenset(_COMMON.split())


def _said_values(value: Any) -> Iterable[str]:
    """The strings inside a JSON value (function-call arguments), without its keys."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _said_values(item)
    elif isinstance(value, list):
        for item in value:
            yield from _said_values(item)


def _loads(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def said_texts(row: Mapping[str, Any]) -> list[str]:
    """What was said in a stored message: never its JSON wrapper, field or function names."""
    role = row["role"]
    if role == "user":
        return [row["text"]] if row["text"] else []  # system events say nothing of a person
    if role == "assistant":
        texts = [t for t in (row["content"], row["text"]) if t]
        for call in _loads(row["tool_calls"]) or []:
            arguments = _loads(call.get("function", {}).get("arguments"))
            texts += list(_said_values(arguments))
        return texts
    if role == "tool":  # the function's report, e.g. search results it quoted
        report = unpack_tool_result(row["content"])[1]
        return [report] if report else []
    return []


def distinctive(name: str, agent_name: str | None = None) -> bool:
    """Whether a name alone may stand for the person (see the module docstring)."""
    words = [w.casefold() for w in _WORD.findall(name)]
    if len(name) < MIN_NAME_CHARS or not words or not any(c.isalpha() for c in name):
        return False
    if agent_name is not None and name.casefold() == agent_name.strip().casefold():
        return False
    return any(w not in COMMON_WORDS and not w.isdigit() for w in words)


class Matcher:
    """Finds the person in said text: their id as a token, or a distinctive name as a whole
    name."""

    def __init__(self, user_id: str, names: Iterable[str], agent_name: str | None = None) -> None:
        self.user_id = user_id.strip()
        unique = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
        self.names = [n for n in unique if distinctive(n, agent_name)]
        self.not_matched = [n for n in unique if n not in self.names]
        parts = [rf"(?<!\w){re.escape(self.user_id)}(?!\w)"]
        parts += [rf"(?<!\w){re.escape(n)}(?!\w)" for n in self.names]
        self.pattern = re.compile("|".join(parts), re.IGNORECASE)

    def for_agent(self, agent_name: str) -> Matcher:
        """The same person, without the names that are this agent's own name."""
        return Matcher(self.user_id, [*self.names, *self.not_matched], agent_name)

    def __call__(self, text: str | None) -> bool:
        return bool(text) and self.pattern.search(text or "") is not None

    def any(self, texts: Iterable[str]) -> bool:
        return any(self(t) for t in texts)

    def scrub_lines(self, text: str) -> tuple[str, int]:
        """The text without the lines that name the person, and how many went."""
        lines = text.split("\n")
        kept = [line for line in lines if not self(line)]
        return "\n".join(kept), len(lines) - len(kept)

    def scrub_sentences(self, text: str) -> tuple[str, int]:
        sentences = _SENTENCE.split(text) if text else []
        kept = [s for s in sentences if not self(s)]
        return " ".join(kept).strip(), len(sentences) - len(kept)


def doomed_message_ids(
    rows: Sequence[Mapping[str, Any]], sender_id: str, mentions: Matcher
) -> tuple[set[int], int]:
    """Ids of the messages to erase, and how many messages of other people name the person.

    `rows` are in conversation order. A turn is a run of inputs (user-role rows) and the
    agent's messages after it. Erased: the person's own messages; every agent message of a turn
    whose people's messages are all theirs (the replies to them); any agent message whose said
    text names them. A function call and its results go together (matched by tool-call id, not
    by position), so the queue never keeps a call without its results or a result without its
    call.
    """
    doomed: set[int] = set()
    kept_mentions = 0
    turn_inputs: list[Mapping[str, Any]] = []
    previous_role = ""
    for row in _turn_order(rows):
        role = row["role"]
        if role == "user":
            if previous_role != "user":
                turn_inputs = []
            turn_inputs.append(row)
            if row["sender_id"] == sender_id:
                doomed.add(row["id"])
            elif row["kind"] == "user_message" and mentions.any(said_texts(row)):
                kept_mentions += 1  # another person's own words: theirs to erase, not ours
        elif role in ("assistant", "tool"):
            people = [m for m in turn_inputs if m["kind"] == "user_message"]
            answers_them = bool(people) and all(m["sender_id"] == sender_id for m in people)
            if answers_them or mentions.any(said_texts(row)):
                doomed.add(row["id"])
        previous_role = role
    return _whole_call_groups(rows, doomed), kept_mentions


def _turn_order(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows with any input stored while a function call still awaited its result (it waited,
    pending, for the next turn) moved to where that next turn begins."""
    ordered: list[Mapping[str, Any]] = []
    waiting: list[Mapping[str, Any]] = []
    open_calls: set[str] = set()
    for row in rows:
        role = row["role"]
        if role == "user" and open_calls:
            waiting.append(row)
            continue
        if role == "user" and waiting:
            ordered += waiting
            waiting = []
        if role == "assistant":
            open_calls = {str(c.get("id")) for c in _loads(row["tool_calls"]) or []}
        elif role == "tool":
            open_calls.discard(str(row["tool_call_id"]))
        ordered.append(row)
    return ordered + waiting


def _whole_call_groups(rows: Sequence[Mapping[str, Any]], doomed: set[int]) -> set[int]:
    call_owner: dict[str, int] = {}
    members: dict[int, list[int]] = {}
    for row in rows:
        if row["role"] == "assistant":
            for call in _loads(row["tool_calls"]) or []:
                call_owner[str(call.get("id"))] = row["id"]
            members.setdefault(row["id"], [row["id"]])
    for row in rows:
        owner = call_owner.get(str(row["tool_call_id"])) if row["role"] == "tool" else None
        if owner is not None:
            members[owner].append(row["id"])
    result = set(doomed)
    for group in members.values():
        if result.intersection(group):
            result.update(group)
    return result
