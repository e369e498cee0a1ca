"""An experiment, not the bot: the LLM client's HTTP exchange on a bare aiohttp session instead
of `openai.AsyncOpenAI.post` (httpx underneath), to measure what the transport costs.

`python -m bench --llm-transport aiohttp` applies it in the benchmark process and in the
footprint child (through BENCH_LLM_TRANSPORT). Everything else — request body, retries, error
mapping, parsing — stays the bot's own code; only `LLMClient._post` is replaced.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

from bot import llm
from bot.llm_errors import parse_error

ENV = "BENCH_LLM_TRANSPORT"


async def _post(self: llm.LLMClient, body: bytes) -> bytes:
    session: aiohttp.ClientSession | None = getattr(self, "_bench_session", None)
    if session is None or session.closed:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(100, self.max_concurrency)),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Authorization": f"Bearer {self.client.api_key}",
                     "Content-Type": "application/json"},
        )
        self._bench_session = session  # type: ignore[attr-defined]
    async with self._slots, session.post(f"{self.base_url}/chat/completions",
                                         data=body) as response:
        raw = await response.read()
        if response.status >= 400:
            raise llm._StatusError(parse_error(response.status, raw, response.headers))
        return raw


async def _aclose(self: llm.LLMClient) -> None:
    session = getattr(self, "_bench_session", None)
    if session is not None:
        await session.close()
    await _original_aclose(self)


_original_aclose: Any = llm.LLMClient.aclose


def apply(name: str | None = None) -> str:
    """Switch the transport if asked (by argument or environment); returns the one in use."""
    name = name or os.environ.get(ENV) or "openai"
    if name == "aiohttp":
        llm.LLMClient._post = _post  # type: ignore[method-assign]
        llm.LLMClient.aclose = _aclose  # type: ignore[method-assign]
        os.environ[ENV] = name  # child processes (the footprint child) follow
    return name
