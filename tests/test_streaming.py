"""Putting a streamed answer together (bot/streaming.py).

The chunk shapes follow the servers': OpenAI sends a tool call's arguments as fragments that
name only the call's `index` after the first (platform.openai.com/docs/api-reference/
chat-streaming, "choices[].delta.tool_calls"), fragments cut anywhere; Ollama sends each call
whole in one chunk (ollama/ollama openai/openai.go, toChunk); with `stream_options:
{"include_usage": true}` the last chunk carries `usage` and an empty `choices` list.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.completion import parse_completion
from bot.streaming import StreamAssembler, partial_string_field


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def _openai_fragments(arguments: str, size: int) -> list[dict]:
    first = _chunk({"role": "assistant", "tool_calls": [{
        "index": 0, "id": "call_1", "type": "function",
        "function": {"name": "send_message", "arguments": ""}}]})
    rest = [_chunk({"tool_calls": [{"index": 0, "function": {"arguments": arguments[i:i + size]}}]})
            for i in range(0, len(arguments), size)]
    return [first, *rest, _chunk({}, "tool_calls")]


def test_fragmented_tool_call_arguments_assemble_to_the_unstreamed_answer() -> None:
    message = "Hello \"Ana\" \u00e9 \U0001f600"
    arguments = json.dumps({"inner_thoughts": "say hi", "message": message,
                            "request_heartbeat": False})
    assembler = StreamAssembler()
    for chunk in _openai_fragments(arguments, 3):
        assembler.feed(chunk)
    assembler.feed({"id": "c", "choices": [], "usage": {
        "prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
    completion = parse_completion(json.dumps(assembler.response()).encode(), 0.0)
    assert [(c.id, c.name, json.loads(c.arguments)) for c in completion.tool_calls] == [
        ("call_1", "send_message", json.loads(arguments))]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.total_tokens == 15
    assert assembler.spoken() == [message]


def test_whole_calls_without_an_index_are_separate_calls() -> None:
    assembler = StreamAssembler()
    for n in (1, 2):  # Ollama: each call whole, some servers leave out the index
        assembler.feed(_chunk({"tool_calls": [{"id": f"call_{n}", "type": "function",
                                               "function": {"name": "send_message",
                                                            "arguments": {"message": f"m{n}"}}}]}))
    assembler.feed(_chunk({}, "stop"))
    assert assembler.spoken() == ["m1", "m2"]
    calls = assembler.response()["choices"][0]["message"]["tool_calls"]
    assert [c["id"] for c in calls] == ["call_1", "call_2"]


def test_content_reasoning_and_provider_fields_are_kept() -> None:
    assembler = StreamAssembler()
    for delta in ({"reasoning_content": "think "}, {"reasoning_content": "more"},
                  {"content": "Hel"}, {"content": "lo"}):
        assembler.feed(_chunk(delta))
    assembler.feed(_chunk({}, "stop"))
    completion = parse_completion(json.dumps(assembler.response()).encode(), 0.0)
    assert completion.content == "Hello"
    assert completion.reasoning == "think more"
    assert completion.extra == {"reasoning_content": "think more"}
    assert assembler.spoken() == []


def test_garbage_chunks_are_ignored() -> None:
    assembler = StreamAssembler()
    for chunk in ("x", None, {"choices": "no"}, {"choices": [{"delta": "no"}]}, {"choices": [1]}):
        assembler.feed(chunk)
    assert assembler.response()["choices"][0]["message"]["content"] is None


def test_a_key_inside_another_value_is_not_the_field() -> None:
    document = '{"inner_thoughts": "the \\"message\\": x", "nested": {"message": "no"}, "mess'
    assert partial_string_field(document, "message") == ""
    assert partial_string_field(document + 'age": "ye', "message") == "ye"


def test_cut_escapes_wait_for_their_rest() -> None:
    whole = '{"message": "a\\u00e9\\ud83d\\ude00\\n"}'
    seen = [partial_string_field(whole[:cut], "message") for cut in range(len(whole) + 1)]
    assert seen[-1] == "a\u00e9\U0001f600\n"
    # Never a broken character: each value is a prefix of the final one.
    assert all(seen[-1].startswith(value) for value in seen)


@settings(max_examples=150, deadline=None)
@given(thoughts=st.text(max_size=30), message=st.text(max_size=60),
       ascii_only=st.booleans())
def test_every_prefix_of_the_arguments_gives_a_prefix_of_the_message(
        thoughts: str, message: str, ascii_only: bool) -> None:
    document = json.dumps({"inner_thoughts": thoughts, "message": message,
                           "request_heartbeat": True}, ensure_ascii=ascii_only)
    previous = ""
    for cut in range(len(document) + 1):
        value = partial_string_field(document[:cut], "message")
        assert message.startswith(value)
        assert value.startswith(previous)  # what was shown is never taken back
        previous = value
    assert previous == message
