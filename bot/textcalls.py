"""Function calls a model wrote as text, because the server did not parse them into `tool_calls`.

Open models are trained to write their calls in their own format; a server without a matching
tool-call parser (vLLM without `--tool-call-parser`, a GGUF with a plain chat template, a
fine-tune with its own habits) passes that text through as `content`. Three formats are read:

- Hermes / Qwen: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call,
  anywhere in the text (Qwen2.5's chat template, tokenizer_config.json: "For each function call,
  return a json object with function name and arguments within <tool_call></tool_call> XML
  tags"; NousResearch Hermes-2-Pro model card).
- Llama 3.1 / 3.2: the whole answer is `{"name": ..., "parameters": {...}}`, optionally after
  `<|python_tag|>`, several separated by ";" (Meta's Llama 3.1 prompt-format docs, "JSON based
  tool calling"; vLLM's llama3_json tool parser accepts "arguments" too and the ";" separator).
- Mistral: `[TOOL_CALLS][{"name": ..., "arguments": {...}}]` (mistral-common tokenizers up to
  v7) or `[TOOL_CALLS]name[ARGS]{...}` (v11 and later; vLLM's mistral_tool_parser).

A call is taken only when its name is one of the agent's functions: anything else (a JSON
example in a reply, a function that does not exist) stays text. The calls come back without ids;
the agent gives them ids and stores them as ordinary `tool_calls`, so the history it replays is
the standard shape every server accepts (the server's chat template renders them back in the
model's own format).
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from bot.messages import ToolCall
from bot.tools import ToolError, parse_arguments

_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|\Z)", re.DOTALL)
_MISTRAL = "[TOOL_CALLS]"
_MISTRAL_NAMED = re.compile(r"\s*([A-Za-z0-9_.-]{1,64})\s*\[ARGS\]")
_PYTHON_TAG = "<|python_tag|>"
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")
_NAME = re.compile(r'"name"\s*:\s*"([^"]{1,64})"')
_DECODER = json.JSONDecoder(strict=False)


@dataclass
class TextCalls:
    text: str | None  # what is left of the answer: the model's own words
    calls: list[ToolCall] = field(default_factory=list)


def extract(content: str | None, known: Collection[str]) -> TextCalls:
    """The calls written in `content` to functions in `known`, and the text around them."""
    if not content:
        return TextCalls(content)
    if "<tool_call>" in content:
        return _hermes(content, known)
    if _MISTRAL in content:
        return _mistral(content, known)
    if "{" in content:
        return _llama(content, known)
    return TextCalls(content)


def _rest(text: str) -> str | None:
    return text.strip() or None


def _call(value: Any, known: Collection[str], keys: tuple[str, ...] = ("arguments",)
          ) -> ToolCall | None:
    """A ToolCall from {"name": .., "arguments": ..} if the name is known."""
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    if not isinstance(name, str) or name.strip() not in known:
        return None
    arguments = next((value[key] for key in keys if key in value), {})
    return ToolCall("", name.strip(), _arguments_text(arguments))


def _arguments_text(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments  # already JSON text (or broken: the tool reports it to the model)
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)


def _hermes(content: str, known: Collection[str]) -> TextCalls:
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        found = _hermes_block(match.group(1), known)
        if found is None:
            return match.group(0)  # an unknown function: it stays text
        calls.append(found)
        return ""

    rest = _HERMES.sub(take, content)
    return TextCalls(_rest(rest), calls) if calls else TextCalls(content)


def _hermes_block(block: str, known: Collection[str]) -> ToolCall | None:
    try:
        value: Any = json.loads(block, strict=False)
    except json.JSONDecodeError:
        try:
            value = parse_arguments(block)  # trailing commas, single quotes, cut off
        except ToolError:
            # Unreadable JSON around a readable name: run it, so the model hears what is wrong.
            named = _NAME.search(block)
            if named is None or named.group(1) not in known:
                return None
            return ToolCall("", named.group(1), block)
    return _call(value, known)


def _mistral(content: str, known: Collection[str]) -> TextCalls:
    before, _, after = content.partition(_MISTRAL)
    calls: list[ToolCall] = []
    for chunk in after.split(_MISTRAL):
        stripped = chunk.strip()
        named = _MISTRAL_NAMED.match(chunk)
        if named is not None:  # v11+: name[ARGS]{...}
            if named.group(1) not in known:
                return TextCalls(content)
            arguments = chunk[named.end():].strip()
            calls.append(ToolCall("", named.group(1), arguments or "{}"))
            continue
        try:
            value, end = _DECODER.raw_decode(stripped)
        except json.JSONDecodeError:
            return TextCalls(content)
        if stripped[end:].strip():
            return TextCalls(content)
        for item in value if isinstance(value, list) else [value]:
            found = _call(item, known)
            if found is None:
                return TextCalls(content)
            calls.append(found)
    return TextCalls(_rest(before), calls) if calls else TextCalls(content)


def _llama(content: str, known: Collection[str]) -> TextCalls:
    before, tag, after = content.partition(_PYTHON_TAG)
    if not tag:
        before, after = "", content
    text = _FENCE.sub("", after.strip())  # small models like a ```json fence around it
    calls: list[ToolCall] = []
    position = 0
    while position < len(text):
        try:
            value, end = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError:
            return TextCalls(content)
        found = _call(value, known, ("parameters", "arguments"))
        if found is None:
            return TextCalls(content)  # a JSON answer, or a function we do not have
        calls.append(found)
        position = end
        while position < len(text) and text[position] in " \t\r\n;":
            position += 1
    return TextCalls(_rest(before), calls) if calls else TextCalls(content)
