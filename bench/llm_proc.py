"""The scripted LLM server (tests/llm_server.py) in its own process.

A benchmark must not share its event loop (or its core) with the server it waits on: an
in-process server's request handling would be charged to the bot. The child prints its base URL
as one JSON line, answers `stats` on stdin with a JSON line of counters, and exits when stdin
closes (so it never outlives the benchmark).

    async with LLMProcess(latency=1.0) as llm:
        settings = Settings(llm_base_url=llm.base_url, ...)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sys
from typing import Any

from bench.script import answer
from tests.llm_server import ScriptedLLM, Step

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2's size, so Chroma does the work real vectors cost


class LLMProcess:
    """Start and stop the server child; ask it for its counters."""

    def __init__(self, latency: float = 0.0, slow_seconds: float = 0.0,
                 embedding_dim: int = EMBEDDING_DIM) -> None:
        self.args = ["--latency", str(latency), "--slow", str(slow_seconds),
                     "--dim", str(embedding_dim)]
        self.base_url = ""
        self._proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LLMProcess:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.llm_proc", *self.args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 30)
        if not line:
            raise RuntimeError("the LLM server process did not start")
        self.base_url = json.loads(line)["base_url"]
        return self

    async def stats(self) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(b"stats\n")
        await self._proc.stdin.drain()
        return dict(json.loads(await self._proc.stdout.readline()))

    async def __aexit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _serve(latency: float, slow: float, dim: int) -> None:
    server = ScriptedLLM(latency=latency, embedding_dim=dim)
    script = functools.partial(answer, slow_seconds=slow)

    def handler(request: dict[str, Any]) -> Step:
        # The server records every request for tests; a long benchmark needs none of them.
        if len(server.requests) > 64:
            server.requests.clear()
            server.embedding_requests.clear()
        return script(request)

    server.handler = handler
    await server.start()
    print(json.dumps({"base_url": server.base_url}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            if line.strip() == b"stats":
                stats = {"chat_calls": server.chat_calls, "max_inflight": server.max_inflight,
                         "busy_seconds": server.busy_seconds,
                         "handled_seconds": server.handled_seconds}
                print(json.dumps(stats), flush=True)
    finally:
        await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--dim", type=int, default=EMBEDDING_DIM)
    args = parser.parse_args()
    try:
        import uvloop  # the server is harness, not the bot: let it be as fast as it can

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(_serve(args.latency, args.slow, args.dim))


if __name__ == "__main__":
    main()
