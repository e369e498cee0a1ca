"""The engine: owns storage, memory tiers and the LLM, and serves agents to the adapters.

Adapters (terminal, Discord) call `Engine.send` with a stable agent key; the per-agent turn
queue behind it (pending messages, one turn at a time per agent, the outbox) is bot/turns.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from bot import personas, redact
from bot.agent import (
    Agent,
    Services,
)
from bot.channel_memory import ChannelMemoryMixin
from bot.commands import CommandsMixin
from bot.config import Settings
from bot.context import Budget, ContextWindow
from bot.datalock import DataDirLock
from bot.embeddings import Embedder, make_embedder
from bot.llm import LLMClient
from bot.memory.archival import ArchivalMemory
from bot.memory.core import Block, CoreMemory
from bot.memory.people import People
from bot.memory.recall import RecallMemory
from bot.memory.recall_index import RecallIndexer, pause_dense_recall
from bot.memory.vectors import VectorIndex
from bot.messages import (
    clean_text,
    is_clean,
    iso,
    parse_iso,
    utcnow,
)
from bot.steps import PLAIN_TEXT_RULES
from bot.store import Store
from bot.tasks import observe
from bot.tokens import TokenCounter
from bot.tools import TOOL_SCHEMAS
from bot.turns import TurnsMixin, _Slot
from bot.window_state import WindowState

log = logging.getLogger(__name__)


@dataclass
class AgentSpec:
    """How to create an agent the first time its key is used."""

    name: str = "Sam"
    persona: str | None = None  # a persona file name
    human: str | None = None  # a human template file name
    persona_text: str | None = None
    human_text: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


class Engine(TurnsMixin, CommandsMixin, ChannelMemoryMixin):
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None) -> None:
        self.settings = settings
        redact.protect(secret.get_secret_value() for secret in (
            settings.llm_api_key, settings.embedding_api_key, settings.discord_token) if secret)
        self.tz = ZoneInfo(settings.timezone)
        self.data_lock = DataDirLock(settings.data_dir)
        self.store = Store(settings.db_path)
        self.counter = TokenCounter(settings.llm_model)
        self.llm = LLMClient.from_settings(settings)
        self._embedding_openai = self._embedding_client() if embedder is None else None
        self._owns_embedder = embedder is None
        self.embedder = embedder or make_embedder(
            settings.embedding_provider,
            model_dir=settings.local_embedding_model_dir,
            cache_dir=settings.models_dir,
            openai_client=self._embedding_openai,
            openai_model=settings.embedding_model,
            openai_max_input_tokens=settings.embedding_max_input_tokens,
        )
        self.vectors = VectorIndex(
            path=None if settings.chroma_host else settings.chroma_dir,
            host=settings.chroma_host,
            port=settings.chroma_port,
            memory_limit_mb=settings.chroma_memory_limit_mb,
            call_timeout=settings.chroma_timeout,
        )
        dense = self._recall_embeddings()
        self.recall = RecallMemory(self.store, self.tz, self.embedder if dense else None)
        # Message vectors are computed after commit, off the turn's path (bot/memory/recall_index).
        self.recall_indexer = RecallIndexer(self.store, self.embedder) if dense else None
        self.archival = ArchivalMemory(self.store, self.vectors, self.embedder, self.counter)
        budget = Budget(
            window=settings.context_window,
            # Reasoning tokens fill the window too while the answer is written.
            response_reserve=self.llm.output_budget(),
            warning_fraction=settings.context_warning_fraction,
            flush_fraction=settings.context_flush_fraction,
            target_fraction=settings.context_target_fraction,
            keep_last=settings.keep_last_messages,
        )
        self.context = ContextWindow(budget, self.counter, self.llm, TOOL_SCHEMAS, self.tz,
                                     PLAIN_TEXT_RULES[settings.plain_text_replies])
        self.windows = WindowState(
            budget, base_url=settings.llm_base_url,
            api_key=settings.llm_api_key.get_secret_value(), model=settings.llm_model,
            configured=settings.context_window, explicit=settings.llm_context_window is not None,
            cap=settings.llm_working_context or None, timeout=min(5.0, settings.llm_timeout),
        )
        self.context.windows = self.windows
        self.services = Services(
            self.store, self.recall, self.archival, self.context, self.llm,
            settings.step_cap, settings.tool_output_limit, settings.plain_text_replies,
        )
        self._agents: OrderedDict[str, Agent] = OrderedDict()
        self._slots: dict[str, _Slot] = {}
        self._loading: dict[str, asyncio.Lock] = {}
        self._warm_up: asyncio.Task[None] | None = None

    def _recall_embeddings(self) -> bool:
        """Whether recall search also ranks by meaning (each message embedded once, locally by
        default; "auto" avoids paying a remote endpoint per message unless asked to)."""
        mode = self.settings.recall_embeddings
        return mode == "on" or (mode == "auto" and self.settings.embedding_provider == "local")

    def _embedding_client(self) -> Any:
        if self.settings.embedding_provider != "openai":
            return None
        import openai

        key = self.settings.embedding_api_key or self.settings.llm_api_key
        return openai.AsyncOpenAI(
            base_url=self.settings.embedding_base_url or self.settings.llm_base_url,
            api_key=key.get_secret_value() or "not-needed",
            timeout=self.settings.llm_timeout,
            max_retries=2,
            http_client=openai.DefaultAioHttpClient(timeout=self.settings.llm_timeout),
        )

    async def open(self) -> Engine:
        try:
            # Before touching any file: a second process on this folder must change nothing.
            self.data_lock.acquire()
        except BaseException:
            await self._close_clients()
            raise
        try:
            await self.store.open()
        except BaseException:
            await self._close_clients()
            self.data_lock.release()
            raise
        try:  # what this model's server said before, then what it says now
            await self.windows.load(self.store)
            await self.windows.discover()
        except Exception:  # never a reason not to start: the configured window stands
            log.exception("could not find the context window of %s", self.settings.llm_model)
        if self.recall_indexer is not None:
            self.recall_indexer.start()
        else:  # nothing would ever empty the queue
            await pause_dense_recall(self.store)
        # Start Chroma's process in the background, so a first archival search does not wait
        # for its start-up; a database without passages does not need it yet.
        if await self.store.scalar("SELECT 1 FROM passages LIMIT 1"):
            self._warm_up = observe(asyncio.create_task(
                self.vectors.warm(), name="vector-index-warm-up"), "starting the vector index", log)
        return self

    async def _close_clients(self) -> None:
        await self.llm.aclose()
        if self._owns_embedder:
            await self.embedder.aclose()
        if self._embedding_openai is not None:
            await self._embedding_openai.close()

    async def aclose(self) -> None:
        try:
            await self._aclose()
        finally:
            self.data_lock.release()  # last: nothing of ours touches the folder any more

    async def _aclose(self) -> None:
        for slot in list(self._slots.values()):  # let running turns finish their commit
            async with slot.lock:
                pass
        if self.recall_indexer is not None:
            await self.recall_indexer.aclose()
        # Chroma gets every committed passage before it closes (each write then records its
        # count in SQLite, so the store closes after).
        await self.archival.flush()
        await self.store.close()
        await self._close_clients()
        if self._warm_up is not None:  # a client still being opened would outlive aclose
            await asyncio.gather(self._warm_up, return_exceptions=True)
        await self.vectors.aclose()

    async def __aenter__(self) -> Engine:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- agents ---------------------------------------------------------------------------------

    async def exists(self, agent_id: str) -> bool:
        if not is_clean(agent_id):
            return False  # could never have been stored
        return await self.store.scalar("SELECT 1 FROM agents WHERE id=?", (agent_id,)) is not None

    async def list_agents(self) -> list[dict[str, Any]]:
        rows = await self.store.fetchall("SELECT id, name, created_at FROM agents ORDER BY id")
        return [dict(row) for row in rows]

    async def agent(self, agent_id: str, spec: AgentSpec | None = None) -> Agent:
        """The live agent for a key, loaded from the database or created from spec."""
        if not is_clean(agent_id):
            raise ValueError(f"{clean_text(agent_id)[:60]!r} is not a usable agent name (it"
                             " holds characters that are not valid text).")
        await self.counter.ready()  # only waits in the first second after start-up
        agent = self._agents.get(agent_id)
        if agent is not None:
            self._agents.move_to_end(agent_id)
            return agent
        async with self._loading.setdefault(agent_id, asyncio.Lock()):
            agent = self._agents.get(agent_id)
            if agent is None:
                if not await self.exists(agent_id):
                    if spec is None:
                        raise KeyError(f"There is no agent {agent_id!r}.")
                    await self._create(agent_id, spec)
                await self.windows.discover(force=False)  # Ollama: /api/ps once it is loaded
                agent = await self._load(agent_id)
                self._agents[agent_id] = agent
                self._unload_idle()
        self._loading.pop(agent_id, None)
        return agent

    def _unload_idle(self) -> None:
        """Keep at most max_loaded_agents in memory; idle ones are reloaded on demand."""
        excess = len(self._agents) - self.settings.max_loaded_agents
        for agent_id in list(self._agents)[:max(0, excess)]:
            slot = self._slots.get(agent_id)
            if slot is None or (not slot.lock.locked() and not slot.waiters):
                self._agents.pop(agent_id)
                self._slots.pop(agent_id, None)

    def _blocks_for(self, spec: AgentSpec) -> list[Block]:
        folder = self.settings.personas_dir
        persona = spec.persona_text
        if persona is None:
            persona = personas.read(folder, spec.persona or self.settings.default_persona)
        human = spec.human_text
        if human is None:
            human = personas.read(
                folder / "humans", spec.human or self.settings.default_human, "human"
            )
        limit = self.settings.core_memory_limit
        return [
            Block("persona", persona[:limit], limit, 0),
            Block("human", human[:limit], limit, 1),
        ]

    async def _create(self, agent_id: str, spec: AgentSpec) -> None:
        blocks = self._blocks_for(spec)
        now = iso(utcnow())
        statements = [(
            "INSERT INTO agents (id, name, created_at, persona_name, human_name, options)"
            " VALUES (?,?,?,?,?,?)",
            (agent_id, spec.name, now, spec.persona, spec.human, json.dumps(spec.options)),
        )]
        statements += CoreMemory(blocks).save_statements(agent_id, now)
        await self.store.commit(statements)
        log.info("created agent %s", agent_id)

    async def _load(self, agent_id: str) -> Agent:
        row = await self.store.fetchone("SELECT * FROM agents WHERE id=?", (agent_id,))
        assert row is not None
        block_rows = await self.store.fetchall(
            "SELECT * FROM core_blocks WHERE agent_id=? ORDER BY position", (agent_id,)
        )
        blocks = [
            Block(r["label"], r["value"], r["char_limit"], r["position"]) for r in block_rows
        ]
        queue = await self.recall.in_context(agent_id)
        options = json.loads(row["options"] or "{}")
        self.archival.forget(agent_id)  # a load re-reads the truth
        archival_count = await self.archival.count(agent_id)
        await self._reconcile_archival(agent_id, archival_count)
        agent = Agent(
            self.services,
            agent_id=agent_id,
            name=row["name"],
            core=CoreMemory(blocks),
            summary=row["summary"],
            queue=queue,
            core_updated_at=parse_iso(row["core_updated_at"]) if row["core_updated_at"] else None,
            warning_sent=bool(row["warning_sent"]),
            recall_count=await self.recall.count(agent_id),
            archival_count=archival_count,
            options=options,
            people=await People.load(
                self.store, agent_id, enabled=bool(options.get("people")),
                limit=self.settings.person_block_limit,
                in_context=self.settings.people_in_context),
        )
        return agent

    async def _reconcile_archival(self, agent_id: str, stored: int) -> None:
        """A crash can leave Chroma and SQLite apart (a vector whose turn never committed, or a
        committed passage whose vector was lost); SQLite is the truth."""
        if stored == 0:
            # Nothing to re-index, and a search of an empty archive never reaches Chroma: an
            # agent without passages loads without touching (or even importing) Chroma.
            return
        try:
            changed = await self.archival.verify(agent_id, stored)
            if changed:
                log.warning("archival index of %s repaired: %d re-indexed, %d orphans removed",
                            agent_id, *changed)
        except Exception:  # an unreachable embedder must not keep the agent from loading
            log.exception("could not check the archival index of %s", agent_id)

    async def reload(self, agent_id: str) -> Agent:
        """Drop the in-memory agent and load it again from the database (the source of truth)."""
        self._agents.pop(agent_id, None)
        return await self.agent(agent_id)

    # --- adapter settings (e.g. how a Discord channel is served) ------------------------------

    async def get_setting(self, key: str, default: Any = None) -> Any:
        value = await self.store.scalar("SELECT value FROM kv WHERE key=?", (key,))
        return default if value is None else json.loads(value)

    async def set_setting(self, key: str, value: Any) -> None:
        await self.store.commit([(
            "INSERT INTO kv (key, value) VALUES (?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value=excluded.value",
            (key, json.dumps(value)),
        )])
