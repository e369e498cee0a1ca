"""`/forget-me`: erasing one person from every agent the bot holds.

Which text is about the person is decided in bot/privacy.py; this module finds the agents
concerned, erases under each agent's lock (so it never interleaves with a turn) and then makes
sure no copy of the erased text stays in the database file: `secure_delete` (bot/store.py
PRAGMAS) zeroes freed space, the full-text index is merged so its old segments are dropped, and
the WAL is checkpointed and truncated.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from bot.agent import TurnResult
from bot.privacy import Matcher, doomed_message_ids
from bot.store import CONTEXT_ORDER, Statement, Store

if TYPE_CHECKING:
    from bot.engine import Engine

log = logging.getLogger(__name__)

_CHUNK = 500  # ids per IN (...) list, far below SQLite's limit on bound parameters
MAX_NAME = 100  # longer stored names are not searched (a huge pattern scans slowly)


@dataclass
class ForgetReport:
    agents_reset: int = 0  # the person's own private agents, erased whole
    agents_changed: int = 0
    messages: int = 0  # their messages and the agent messages that went with them
    lines: int = 0  # core-memory lines
    person_blocks: int = 0  # their own per-person blocks in shared agents (bot/memory/people.py)
    sentences: int = 0  # summary sentences
    passages: int = 0
    checkpoints: int = 0  # checkpoints rewritten without the erased lines and messages
    outbox: int = 0  # reply texts (delivered or not)
    kept_mentions: int = 0  # other people's own messages that name them (kept)
    names_not_matched: list[str] = field(default_factory=list)

    def add(self, other: ForgetReport) -> None:
        for item in fields(self):
            if isinstance(getattr(self, item.name), int):
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))

    def describe(self) -> str:
        """What was erased and, plainly, what was not (for the person who asked)."""
        lines = [
            f"Done. Erased {self.agents_reset} private agent(s) of yours whole, and from"
            f" {self.agents_changed} other agent(s): {self.messages} message(s) (yours, the"
            f" replies to them and the agent's notes naming you), {self.person_blocks} block(s)"
            f" of notes about you, {self.lines} core-memory line(s), {self.sentences} summary"
            f" sentence(s), {self.passages} archival passage(s), {self.outbox} stored reply"
            f" text(s), and {self.checkpoints}"
            " checkpoint(s) rewritten without them.",
            "Not erased, because I cannot tell it is about you: replies and notes that repeat"
            " what you said without your name or id, and the summary's paraphrases (only its"
            " sentences naming you were removed).",
        ]
        if self.kept_mentions:
            lines.append(f"Kept: {self.kept_mentions} message(s) other people wrote that"
                         " mention you — their own words.")
        if self.names_not_matched:
            shown = ", ".join(f"`{n.replace('`', chr(39))}`" for n in self.names_not_matched)
            lines.append(f"Searched by your id only, not by the name(s) {shown}: too short, a"
                         " common word, or the agent's own name.")
        lines.append("Replies already posted in Discord stay in the channel; delete them there.")
        return "\n".join(lines)

    @property
    def changed(self) -> bool:
        return any((self.messages, self.lines, self.sentences, self.passages, self.checkpoints,
                    self.outbox, self.person_blocks))


def _like(needle: str) -> str:
    escaped = needle.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return f"%{escaped}%"


async def names_used(store: Store, sender_id: str) -> list[str]:
    """The names the person's messages were stored under (a nickname changes over time)."""
    rows = await store.fetchall(
        "SELECT DISTINCT sender_name FROM messages WHERE sender_id=? AND sender_name IS NOT NULL",
        (sender_id,))
    return [r[0] for r in rows]


async def agents_concerned(store: Store, sender_id: str, mentions: Matcher) -> list[str]:
    """Every agent the person spoke to, and every agent whose stored text may name them (a
    cheap LIKE pre-filter; each candidate is then checked exactly by the Matcher)."""
    found = {r[0] for r in await store.fetchall(
        "SELECT DISTINCT agent_id FROM messages WHERE sender_id=?1"
        " UNION SELECT agent_id FROM person_blocks WHERE person_id=?1", (sender_id,))}
    # Checkpoint states are JSON with non-ASCII characters escaped.
    needles = {v for n in (sender_id, *mentions.names) for v in (n, json.dumps(n)[1:-1])}
    for needle in sorted(needles):  # one query each: SQLite caps a compound SELECT's terms
        pattern = _like(needle)
        rows = await store.fetchall(
            "SELECT agent_id FROM core_blocks WHERE value LIKE ?1 ESCAPE '!'"
            " UNION SELECT agent_id FROM person_blocks WHERE value LIKE ?1 ESCAPE '!'"
            " UNION SELECT agent_id FROM passages WHERE text LIKE ?1 ESCAPE '!'"
            " UNION SELECT id FROM agents WHERE summary LIKE ?1 ESCAPE '!'"
            " UNION SELECT agent_id FROM checkpoints WHERE state LIKE ?1 ESCAPE '!'"
            " UNION SELECT agent_id FROM outbox WHERE text LIKE ?1 ESCAPE '!'"
            " UNION SELECT agent_id FROM messages WHERE (content LIKE ?1"
            " ESCAPE '!' OR text LIKE ?1 ESCAPE '!' OR tool_calls LIKE ?1 ESCAPE '!')",
            (pattern,))
        found.update(r[0] for r in rows)
    existing = {r[0] for r in await store.fetchall("SELECT id FROM agents")}
    return sorted(found & existing)


def _delete(table: str, key: str, agent_id: str, ids: Iterable[Any]) -> list[Statement]:
    ids = sorted(ids)
    statements: list[Statement] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        statements.append((f"DELETE FROM {table} WHERE agent_id=? AND {key} IN ({marks})",
                           (agent_id, *chunk)))
    return statements


def _scrub_checkpoint(state: dict[str, Any], mentions: Matcher, doomed: set[int],
                      sender_id: str) -> bool:
    changed = False
    people = [p for p in state.get("people", []) if str(p.get("person_id")) != sender_id]
    if len(people) != len(state.get("people", [])):
        state["people"], changed = people, True
    for block in [*state.get("core", []), *people]:
        value, removed = mentions.scrub_lines(str(block.get("value", "")))
        if removed:
            block["value"], changed = value, True
    summary, removed = mentions.scrub_sentences(str(state.get("summary", "")))
    if removed:
        state["summary"], changed = summary, True
    queue = [i for i in state.get("queue", []) if int(i) not in doomed]
    if len(queue) != len(state.get("queue", [])):
        state["queue"], changed = queue, True
    return changed


async def forget_in_agent(engine: Engine, agent_id: str, sender_id: str, person: Matcher
                          ) -> ForgetReport:
    """Erase the person from one agent (see bot/privacy.py for exactly what goes)."""
    report = ForgetReport()
    store = engine.store
    async with engine.slot(agent_id).lock:
        agent = await engine.agent(agent_id)
        mentions = person.for_agent(agent.name)
        report.names_not_matched = mentions.not_matched
        rows = await store.fetchall(
            "SELECT id, role, kind, sender_id, content, text, tool_calls, tool_call_id,"
            # Context order keeps each call next to its results; pending inputs go last.
            f" external_id FROM messages WHERE agent_id=? ORDER BY pending, {CONTEXT_ORDER}",
            (agent_id,))
        doomed, report.kept_mentions = doomed_message_ids(rows, sender_id, mentions)
        report.messages = len(doomed)
        for block in agent.core.blocks.values():
            block.value, removed = mentions.scrub_lines(block.value)
            report.lines += removed
        # Their own block goes whole; other people's blocks lose the lines naming them.
        statements: list[Statement] = []
        for block_of in await agent.people.all_blocks():
            if block_of.person_id == sender_id:
                report.person_blocks += 1
                statements.append(("DELETE FROM person_blocks WHERE agent_id=? AND person_id=?",
                                   (agent_id, sender_id)))
                continue
            value, removed = mentions.scrub_lines(block_of.value)
            if removed:
                report.lines += removed
                statements.append(("UPDATE person_blocks SET value=? WHERE agent_id=? AND"
                                   " person_id=?", (value, agent_id, block_of.person_id)))
        agent.summary, report.sentences = mentions.scrub_sentences(agent.summary)
        passages = [p.id for p in await engine.archival.all_passages(agent_id)
                    if mentions(p.text)]
        report.passages = len(passages)
        for row in await store.fetchall(
                "SELECT name, state FROM checkpoints WHERE agent_id=?", (agent_id,)):
            state = json.loads(row["state"])
            if _scrub_checkpoint(state, mentions, doomed, sender_id):
                report.checkpoints += 1
                statements.append(("UPDATE checkpoints SET state=? WHERE agent_id=? AND name=?",
                                   (json.dumps(state), agent_id, row["name"])))
        # A reply is addressed to the message it answers: replies to their messages go, and
        # any reply that names them.
        targets = {r["external_id"] for r in rows if r["id"] in doomed and r["external_id"]}
        outbox = [r["id"] for r in await store.fetchall(
            "SELECT id, target, text FROM outbox WHERE agent_id=?", (agent_id,))
            if r["target"] in targets or mentions(r["text"])]
        report.outbox = len(outbox)
        if not report.changed:
            return report
        report.agents_changed = 1
        if report.lines or report.sentences:
            agent.core_changed()
        statements = agent.commit_statements() + statements
        statements += _delete("messages", "id", agent_id, doomed)
        statements += _delete("passages", "id", agent_id, passages)
        statements += _delete("outbox", "id", agent_id, outbox)
        await store.commit(statements)
        if passages:
            await engine.archival.delete(agent_id, passages)
        # A handler waiting for the answer to an erased message must not wait forever.
        waiters = engine.slot(agent_id).waiters
        for message_id in doomed:
            waiter = waiters.get(message_id)
            if waiter is not None and not waiter.done():
                waiter.set_result(TurnResult())
        await engine.reload(agent_id)
    return report


async def scrub_storage(store: Store) -> None:
    """Leave no copy of erased text in the database files: merge the full-text index (its
    'delete' entries otherwise sit beside the old terms until a merge), then move the WAL into
    the database and truncate it (secure_delete has zeroed the freed space)."""
    await store.commit([("INSERT INTO messages_fts(messages_fts) VALUES('optimize')", ())])
    row = await store.fetchone("PRAGMA wal_checkpoint(TRUNCATE)")
    if row is not None and row[0]:
        log.warning("the WAL could not be truncated after an erase (database busy)")


async def forget_person(engine: Engine, sender_id: str, names: Iterable[str],
                        reset: Iterable[str] = ()) -> ForgetReport:
    """Erase a person everywhere: the agents in `reset` (their own private ones) whole, and
    from every other agent what is theirs or names them."""
    report = ForgetReport()
    for agent_id in dict.fromkeys(reset):
        if await engine.exists(agent_id):
            await engine.reset(agent_id)
            report.agents_reset += 1
    all_names = [*names, *(n for n in await names_used(engine.store, sender_id)
                           if len(n) <= MAX_NAME)]
    person = Matcher(sender_id, all_names)
    not_matched: dict[str, None] = dict.fromkeys(person.not_matched)
    for agent_id in await agents_concerned(engine.store, sender_id, person):
        found = await forget_in_agent(engine, agent_id, sender_id, person)
        not_matched.update(dict.fromkeys(found.names_not_matched))
        found.names_not_matched = []
        report.add(found)
    report.names_not_matched = list(not_matched)
    await scrub_storage(engine.store)
    return report
