"""The summary table: every target of docs/benchmarks.md next to what this run measured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[dict[str, Any]], tuple[str, bool | None]]


def _ms(value: float) -> str:
    return f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def _overhead(f: dict[str, Any]) -> tuple[str, bool | None]:
    big = f["sizes"][f["largest"]]
    return (f"p50 {_ms(big['p50'])}, p95 {_ms(big['p95'])} ({f['largest']})",
            big["p50"] <= 3 and big["p95"] <= 15)


def _strict(f: dict[str, Any]) -> tuple[str, bool | None]:
    big = f["sizes"][f["largest"]]
    return (f"p50 {_ms(big['strict_p50'])}, p95 {_ms(big['strict_p95'])} ({f['largest']})",
            big["strict_p50"] <= 3 and big["strict_p95"] <= 15)


def _flat(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"p50 x{f['growth_p50']:.2f}, p95 x{f['growth_p95']:.2f}",
            f["growth_p50"] <= 2 and f["growth_p95"] <= 2)


def _calls(f: dict[str, Any]) -> tuple[str, bool | None]:
    return f"{f['calls_per_plain_turn']:.2f} (max {f['max_calls_plain']})", (
        f["max_calls_plain"] == 1 and f["min_calls_plain"] == 1)


def _tokens(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"p50 {f['prompt_p50']:.0f}, last {f['prompt_last']:.0f} tokens/turn;"
            f" reusable prefix {f['reusable_share'] * 100:.0f}% (fixed part"
            f" {f['fixed_tokens']:.0f} tokens)", None)


def _cost(f: dict[str, Any]) -> tuple[str, bool | None]:
    sizes = "; ".join(f"{size} messages: plain {s['plain_turn']}, memory edit"
                      f" {s['edit_one_response']} in one response / {s['edit_two_steps']} in"
                      " two steps" for size, s in f["sizes"].items())
    return (f"wrapper {f['exchange']['two_steps']['wrapper_share'] * 100:.0f}% of a typical"
            f" exchange; tokens per turn at {sizes}", None)


def _edit_calls(f: dict[str, Any]) -> tuple[str, bool | None]:
    ex, prefix = f["exchange"], f["prefix"]["after_edit_two_steps"]
    return (f"{ex['one_response']['calls']} in one response"
            f" ({ex['one_response_heartbeat']['calls']} with request_heartbeat true),"
            f" {ex['two_steps']['calls']} in two steps; stable prefix"
            f" after an edit {prefix['prefix']} of {prefix['prompt']} tokens",
            ex["one_response"]["calls"] == 1 and ex["one_response_heartbeat"]["calls"] == 1)


def _throughput(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['turns_per_s']:.1f} turns/s ({f['share_of_limit'] * 100:.0f}% of"
            f" {f['limit']:.0f}); order kept: {f['in_order']}; max turn {f['max_s']:.1f} s",
            f["share_of_limit"] >= 0.9 and f["in_order"])


def _slow(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"others p95 {_ms(f['with_slow_p95'])} with, {_ms(f['without_slow_p95'])} without",
            f["with_slow_p95"] <= f["without_slow_p95"] * 1.5 + 20)


def _zero(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['mix_turns_per_s']:.0f} turns/s mix, {f['plain_turns_per_s']:.0f} plain",
            f["mix_turns_per_s"] >= 200)


def _archival(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"p50 {_ms(f['archival_p50'])}, p95 {_ms(f['archival_p95'])} over"
            f" {f['passages']:,} passages / {f['agents']:,} agents", f["archival_p95"] <= 10)


def _recall(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"p50 {_ms(f['recall_p50'])}, p95 {_ms(f['recall_p95'])} over"
            f" {f['messages']:,} messages", f["recall_p95"] <= 10)


def _inserts(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"passages {f['passage_rate']:,.0f}/s, {f['passage_mib_per_100k']:.0f} MiB per 100k;"
            f" messages {f['message_rate']:,.0f}/s, {f['message_mib_per_100k']:.0f} MiB per 100k",
            None)


def _rss(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['rss_plain_mib']:.0f} MiB chatting; {f['rss_mib']:.0f} MiB (bot"
            f" {f['rss_bot_mib']:.0f} + Chroma process {f['rss_index_mib']:.0f}) once"
            f" {f['indexes_open']} agents opened their Chroma index ({f['agents']:,} stored,"
            f" {f['active']} active, {f['loaded_after']} loaded after)", f["rss_mib"] <= 300)


def _startup(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"ready {f['ready_s']:.2f} s (median of {f.get('starts', 5)} starts, max"
            f" {f['ready_max_s']:.2f} s); first reply {f['first_reply_s']:.2f} s",
            f["ready_s"] <= 2)


def _discord(f: dict[str, Any]) -> tuple[str, bool | None]:
    return f"p50 {_ms(f['p50'])}, p95 {_ms(f['p95'])}", None


def _progressive(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['progressive_first_p50_s']:.2f} s (after the whole turn:"
            f" {f['whole_turn_first_p50_s']:.2f} s)", f["progressive_first_p50_s"] <= 1.5)


def _observed(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['llm_calls_per_observed']:.2f} ({f['llm_calls_observing']} for"
            f" {f['observed']} messages; the mention after them: {f['llm_calls_mention']})",
            f["llm_calls_observing"] == 0 and f["llm_calls_mention"] == 1)


def _speakers(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['system_tokens_many']:,} tokens at {f['many']}, {f['system_tokens_few']:,} at"
            f" {f['few']} (+{f['growth_tokens']}; {f['blocks_in_context']} of"
            f" {f['blocks_stored']} blocks in context; all {f['blocks_stored']} would add"
            f" {f['unpaged_extra_tokens']:,} more)", None)


def _client(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['post_aiohttp_200']:.2f} ms (httpx transport {f['post_httpx_200']:.2f},"
            f" chat.completions.create {f['create_200']:.2f})", None)


def _stall(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['worker_stall_ms']:.2f} ms (on a thread of the bot:"
            f" {f['thread_stall_ms']:.1f} ms)", None)


def _commit(f: dict[str, Any]) -> tuple[str, bool | None]:
    return (f"{f['commit_one_hop_ms']:.2f} ms (a hop per statement:"
            f" {f['commit_per_statement_ms']:.2f} ms)", None)


ROWS: list[tuple[str, str, str, Check]] = [
    ("overhead", "Overhead per turn (10k msgs, 100k passages)", "p50 ≤ 3 ms, p95 ≤ 15 ms",
     _overhead),
    ("overhead", "… counting the bot's HTTP client too (wall − server time)",
     "p50 ≤ 3 ms, p95 ≤ 15 ms", _strict),
    ("overhead", "Overhead growth, empty → largest", "≤ 2×", _flat),
    ("prompt", "LLM calls per plain chat turn", "exactly 1", _calls),
    ("prompt", "Prompt tokens per turn, cacheable prefix", "report", _tokens),
    ("prompt_cost", "Prompt tokens per turn, framing", "report", _cost),
    ("prompt_cost", "LLM calls per memory-edit turn", "1 when edit + reply share a response",
     _edit_calls),
    ("concurrency", "500 conversations, 1 s LLM, 64 in flight", "≥ 90% of 64 turns/s",
     lambda f: _throughput(f["capped"])),
    ("concurrency", "One slow agent (10 s calls) among others", "delays no one",
     lambda f: _slow(f["slow"])),
    ("concurrency", "Zero-latency LLM, 100 agents", "≥ 200 turns/s", lambda f: _zero(f["zero"])),
    ("search", "archival_memory_search", "p95 ≤ 10 ms at 1M passages / 1k agents", _archival),
    ("search", "conversation_search", "p95 ≤ 10 ms over 1M messages", _recall),
    ("search", "Insert throughput, disk", "report", _inserts),
    ("footprint", "RSS, 10k agents stored, 500 active", "≤ 300 MB", _rss),
    ("footprint", "Start-up to ready (no Discord)", "≤ 2 s", _startup),
    ("discord", "MESSAGE_CREATE → reply posted (emulator)", "report", _discord),
    ("progressive", "First message of a 3-step turn, 1 s LLM", "≈ 1 s (was ≈ 2 s)",
     _progressive),
    ("channel", "LLM calls per observed message (observe mode)", "0", _observed),
    ("channel", "System message, 30 vs 3 speakers (per-person blocks)", "small bound",
     _speakers),
    ("micro", "LLM request, client CPU per call (200 messages)", "report", _client),
    ("micro", "Chroma write: event loop stopped for", "report", _stall),
    ("micro", "A plain turn's commit, CPU", "report", _commit),
]


def summary_table(results: dict[str, Any]) -> str:
    lines = ["| figure | target | measured | met |", "| --- | --- | --- | --- |"]
    for section, label, target, check in ROWS:
        figures = results["sections"].get(section, {}).get("figures")
        if not figures:
            continue
        try:
            measured, met = check(figures)
        except (KeyError, TypeError, ZeroDivisionError) as error:
            measured, met = f"(missing: {error})", False
        mark = "—" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {label} | {target} | {measured} | {mark} |")
    return "\n".join(lines)
