"""A streamed chat completion (`stream: true`), put together chunk by chunk.

Servers stream the same answer in different shapes: OpenAI, vLLM and llama.cpp send a tool call's
arguments as fragments split anywhere (even inside an escape), each continuation naming only the
call's `index` (platform.openai.com/docs/api-reference/chat-streaming, "choices[].delta
.tool_calls"); Ollama sends each call whole in one chunk (ollama/ollama openai/openai.go,
toChunk); some servers leave `index` out. The assembled answer is handed to
`bot.completion.parse_completion`, so a streamed answer is read exactly as the same answer
unstreamed would be. While it streams, `spoken()` gives what send_message has said so far.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bot.completion import MESSAGE_FIELDS


@dataclass
class _CallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


class StreamAssembler:
    """Chunks in, the non-stream response body out (`response()`)."""

    def __init__(self) -> None:
        self.content: list[str] = []
        self.fields: dict[str, list[str]] = {}  # reasoning_content, reasoning, ... as they come
        self.calls: dict[int, _CallParts] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None
        self.chunks = 0

    def feed(self, chunk: Any) -> None:
        if not isinstance(chunk, dict):
            return
        self.chunks += 1
        if isinstance(chunk.get("model"), str):
            self.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):  # include_usage: the last chunk, no choices
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return
        if isinstance(delta.get("content"), str):
            self.content.append(delta["content"])
        for name in MESSAGE_FIELDS:
            value = delta.get(name)
            if isinstance(value, str):
                self.fields.setdefault(name, []).append(value)
            elif value is not None:  # a structured field (reasoning_details): kept whole
                self.fields[name] = value  # type: ignore[assignment]
        for call in delta.get("tool_calls") or []:
            if isinstance(call, dict):
                self._feed_call(call)

    def _feed_call(self, call: dict[str, Any]) -> None:
        index = call.get("index")
        if not isinstance(index, int):
            # No index: a new id starts a call, anything else continues the last one.
            fresh = call.get("id") and all(c.id != call["id"] for c in self.calls.values())
            index = len(self.calls) if fresh or not self.calls else max(self.calls)
        parts = self.calls.setdefault(index, _CallParts())
        if call.get("id"):
            parts.id = str(call["id"])
        function = call.get("function")
        if isinstance(function, dict):
            if function.get("name"):
                parts.name = str(function["name"])
            arguments = function.get("arguments")
            if isinstance(arguments, str):
                parts.arguments.append(arguments)
            elif arguments is not None:  # an object, as some servers send a whole call
                parts.arguments.append(json.dumps(arguments, ensure_ascii=False))
        for key, value in call.items():
            if key not in ("index", "id", "type", "function"):
                parts.extra[key] = value

    def response(self) -> dict[str, Any]:
        """The chat.completion body this stream amounts to."""
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        for name, value in self.fields.items():
            message[name] = "".join(value) if isinstance(value, list) else value
        if self.calls:
            message["tool_calls"] = [
                {"id": parts.id, "type": "function", **parts.extra,
                 "function": {"name": parts.name, "arguments": "".join(parts.arguments)}}
                for _, parts in sorted(self.calls.items())
            ]
        body: dict[str, Any] = {"choices": [{"index": 0, "message": message,
                                             "finish_reason": self.finish_reason}]}
        if self.usage is not None:
            body["usage"] = self.usage
        if self.model is not None:
            body["model"] = self.model
        return body

    def spoken(self) -> list[str]:
        """What each send_message call has said so far (its `message` argument, partly
        written), in call order."""
        return [partial_string_field("".join(parts.arguments), "message")
                for _, parts in sorted(self.calls.items()) if parts.name == "send_message"]


def partial_string_field(document: str, key: str) -> str:
    """The value so far of top-level string field `key` in a JSON object still being
    written: '{"inner_thoughts": "x", "message": "Hel' gives 'Hel'. An escape cut in two is
    left out until its rest arrives; a key inside another value is not the field."""
    depth, index, length = 0, 0, len(document)
    expecting_key = False
    while index < length:
        char = document[index]
        if char in "{[":
            depth += 1
            expecting_key = char == "{"
        elif char in "}]":
            depth -= 1
        elif char == ",":
            expecting_key = depth == 1
        elif char == '"':
            end = _string_end(document, index)
            if end is None:
                return ""
            if depth == 1 and expecting_key and json.loads(document[index:end]) == key:
                rest = document[end:].lstrip()
                if not rest.startswith(":"):
                    return ""
                rest = rest[1:].lstrip()
                return _partial_string(rest[1:]) if rest.startswith('"') else ""
            expecting_key = False
            index = end
            continue
        index += 1
    return ""


def _string_end(document: str, start: int) -> int | None:
    """The index just past the JSON string starting at `start`, None if it is not closed."""
    index = start + 1
    while index < len(document):
        if document[index] == "\\":
            index += 2
            continue
        if document[index] == '"':
            return index + 1
        index += 1
    return None


def _partial_string(body: str) -> str:
    """The decoded text of a JSON string body, possibly unterminated."""
    index, out = 0, []
    while index < len(body):
        char = body[index]
        if char == '"':
            break
        if char == "\\":
            escape = body[index:index + 6] if body[index + 1:index + 2] == "u" else \
                body[index:index + 2]
            if len(escape) < (6 if escape[1:2] == "u" else 2):
                break  # the rest of the escape has not arrived
            try:
                decoded = json.loads(f'"{escape}"')
            except ValueError:
                break
            if 0xD800 <= ord(decoded[-1]) <= 0xDBFF:  # half a surrogate pair: wait for the rest
                pair = body[index:index + 12]
                try:
                    decoded = json.loads(f'"{pair}"') if len(pair) == 12 else ""
                except ValueError:
                    break
                if len(decoded) != 1:  # the low half has not arrived (or is not there)
                    break
                escape = pair
            out.append(decoded)
            index += len(escape)
            continue
        out.append(char)
        index += 1
    return "".join(out)
