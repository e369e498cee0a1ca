"""The deterministic conversation every benchmark replays, and the "model" that answers it.

The driver writes user messages that carry their own instruction (`#plain 17 …`); the scripted
model, running in the LLM server process, reads it and answers the same way every run:

- plain (70%): one `send_message` call — one LLM call per turn;
- core (10%): `core_memory_append` (or `core_memory_replace` once the block is nearly full) with a
  heartbeat, then `send_message`;
- archive (10%): `archival_memory_insert` with a heartbeat, then `send_message`;
- search (10%): `conversation_search` or `archival_memory_search` (alternating) with a heartbeat,
  then `send_message`.

Every reply names the turn it answers (`re 17`), so drivers can check per-agent order. The
people's side of the conversation is in bench/words.py.
"""

from __future__ import annotations

import random
import re
from typing import Any

from bench.words import WORDS, query
from bot.messages import unpack_event
from tests.llm_server import Step, call

_DIRECTIVE = re.compile(r"#(\w+) (\d+)")
_HUMAN_BLOCK = re.compile(r"<human>\n(.*?)\n</human>.*?characters used/limit: .*?human"
                          r" (\d+)/(\d+)", re.S)


def _last_event(messages: list[dict[str, Any]]) -> tuple[str, int, str] | None:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        event = unpack_event(message.get("content"))
        if event is None or event.kind != "user_message":
            continue
        text = event.text
        found = _DIRECTIVE.search(text)
        if found:
            return found.group(1), int(found.group(2)), text
    return None


def _core_edit(system: str, seq: int) -> Step:
    fact = f"Fact {seq}: likes {WORDS[seq % len(WORDS)]}."
    block = _HUMAN_BLOCK.search(system)
    if block and int(block.group(2)) + len(fact) + 1 > int(block.group(3)) - 100:
        last = block.group(1).rsplit("\n", 1)[-1]
        return call("core_memory_replace", label="human", old_content=last, new_content=fact,
                    request_heartbeat=True, inner_thoughts="Keep the block short.")
    return call("core_memory_append", label="human", content=fact, request_heartbeat=True,
                inner_thoughts="Worth remembering.")


def answer(request: dict[str, Any], slow_seconds: float = 0.0) -> Step:
    """The scripted model: one step for a chat-completions request. `#slow` turns take
    slow_seconds longer (on top of the server's latency), to show they delay nobody else."""
    messages = request.get("messages") or []
    if not request.get("tools"):  # the summarizer
        return Step("reply", content="They talked about their days; nothing else stood out.")
    event = _last_event(messages)
    kind, seq, text = event if event else ("plain", 0, "")
    if kind == "slow":
        reply = call("send_message", message=f"re {seq}: sorry, slow.", inner_thoughts="Hm.")
        return reply.with_delay(slow_seconds)
    if (messages and messages[-1].get("role") == "tool") or kind == "plain":
        return call("send_message", message=f"re {seq}: noted.", inner_thoughts="Answer.")
    search = query(random.Random(seq))
    if kind == "core":
        system = str(messages[0].get("content", "")) if messages else ""
        return _core_edit(system, seq)
    if kind == "archive":
        return call("archival_memory_insert", content=f"On turn {seq} they said: {text}",
                    request_heartbeat=True, inner_thoughts="Save it.")
    if kind == "search" and seq % 2:
        return call("archival_memory_search", query=search, request_heartbeat=True,
                    inner_thoughts="Look it up.")
    return call("conversation_search", query=search, request_heartbeat=True,
                inner_thoughts="Look it up.")
