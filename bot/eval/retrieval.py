"""Retrieval eval: does recall search find the turns that answer a question?

Each conversation goes into a fresh agent in a fresh data directory through the real engine, by
the same path live messages take (`Engine.accept`, with the background embedding the engine does
for them); each question is then asked of `RecallMemory.search`, the code behind the
`conversation_search` tool and `/search`. Evidence recall@k: the share of a question's evidence
turns found in the first k results, averaged over questions that have evidence.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bot.config import Settings
from bot.embeddings import Embedder, LocalEmbedder
from bot.engine import AgentSpec, Engine
from bot.eval.locomo import CATEGORIES, Conversation, Question, load

DEFAULT_KS = (1, 5, 10, 25)
QUICK_QUESTIONS = 40
EVAL_SPEC = AgentSpec(name="Sam")


@dataclass
class QuestionResult:
    conversation: str
    question: str
    category: int
    evidence: list[str]
    found: list[str | None]  # dia_id of each result, best first
    recall: dict[int, float]
    seconds: float


@dataclass
class ConversationStats:
    name: str
    turns: int
    questions: int
    ingest_seconds: float
    index_seconds: float
    unembedded: int


@dataclass
class RetrievalReport:
    ks: tuple[int, ...]
    results: list[QuestionResult] = field(default_factory=list)
    conversations: list[ConversationStats] = field(default_factory=list)
    embedder: str = "none (keywords only)"
    cpu_seconds: float = 0.0  # process CPU time (all threads) spent in the timed searches
    load: list[float] = field(default_factory=list)  # 1-minute load average before each batch

    def recall(self, category: int | None = None) -> tuple[int, dict[int, float]]:
        chosen = [r for r in self.results if category is None or r.category == category]
        if not chosen:
            return 0, {k: 0.0 for k in self.ks}
        return len(chosen), {k: statistics.fmean(r.recall[k] for r in chosen) for k in self.ks}

    def latency_ms(self) -> dict[str, float]:
        times = sorted(r.seconds * 1000 for r in self.results)
        if not times:
            return {"p50": 0.0, "p95": 0.0, "max": 0.0}
        return {"p50": percentile(times, 50), "p95": percentile(times, 95), "max": times[-1],
                "cpu_per_search": 1000 * self.cpu_seconds / len(times)}

    def to_json(self) -> dict[str, Any]:
        count, overall = self.recall()
        categories = {}
        for number, name in CATEGORIES.items():
            n, values = self.recall(number)
            if n:
                categories[str(number)] = {"name": name, "questions": n,
                                           "recall": {str(k): v for k, v in values.items()}}
        return {
            "ks": list(self.ks),
            "embedder": self.embedder,
            "overall": {"questions": count, "recall": {str(k): v for k, v in overall.items()}},
            "categories": categories,
            "search_latency_ms": self.latency_ms(),
            "load_average": self.load,
            "conversations": [vars(c) for c in self.conversations],
            "questions": [vars(r) for r in self.results],
        }

    def table(self) -> str:
        head = f"{'':<16}{'n':>5}" + "".join(f"{'R@' + str(k):>8}" for k in self.ks)
        lines = [head]
        rows = [(None, "overall")] + [(c, f"{c} {n}") for c, n in CATEGORIES.items()]
        for category, label in rows:
            n, values = self.recall(category)
            if n:
                lines.append(f"{label:<16}{n:>5}" + "".join(f"{values[k]:>8.3f}" for k in self.ks))
        lat = self.latency_ms()
        lines.append(f"search latency: p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} ms,"
                     f" max {lat['max']:.1f} ms over {len(self.results)} searches;"
                     f" {lat['cpu_per_search']:.1f} ms CPU per search; load average"
                     f" {', '.join(f'{x:.1f}' for x in self.load)} (other work slows it)")
        lines.append(f"embedder: {self.embedder}")
        for c in self.conversations:
            lines.append(f"{c.name}: {c.turns} turns stored in {c.ingest_seconds:.1f} s, embedded"
                         f" in {c.index_seconds:.1f} s more, {c.questions} questions"
                         + (f", {c.unembedded} NOT embedded" if c.unembedded else ""))
        return "\n".join(lines)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(sorted_values) + 0.4999))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def recall_at(found: Sequence[str | None], evidence: Sequence[str], k: int) -> float:
    top = set(found[:k])
    return sum(1 for e in evidence if e in top) / len(evidence)


def eval_settings(base: Settings, data_dir: Path) -> Settings:
    """The base settings with all state in a fresh directory."""
    return base.model_copy(update={
        "data_dir": data_dir, "database_path": None, "chroma_path": None, "chroma_host": None,
    })


def shared_embedder(settings: Settings) -> Embedder | None:
    """One local model for every conversation (loaded once); None lets each engine make its own."""
    if settings.embedding_provider != "local":
        return None
    return LocalEmbedder(settings.local_embedding_model_dir, settings.models_dir)


def quick_subset(questions: list[Question], size: int) -> list[Question]:
    """Up to `size` questions taken in turn from each category (the files group questions by
    category, so the first N alone would cover only one or two)."""
    queues = [[q for q in questions if q.category == c] for c in sorted({q.category for q in
                                                                        questions})]
    chosen: list[Question] = []
    while len(chosen) < size and any(queues):
        for queue in queues:
            if queue and len(chosen) < size:
                chosen.append(queue.pop(0))
    return chosen


async def load_history(engine: Engine, agent_id: str, conversation: Conversation,
                       spec: AgentSpec = EVAL_SPEC) -> dict[int, str]:
    """Store every turn the way live messages are stored; returns message id -> dia_id."""
    ids: dict[int, str] = {}
    for turn in conversation.turns:
        message = await engine.accept(
            agent_id, turn.text, sender_name=turn.speaker, created_at=turn.created_at,
            pending=False, spec=spec,
        )
        ids[message.id] = turn.dia_id
    return ids


async def evaluate_conversation(
    conversation: Conversation, settings: Settings, embedder: Embedder | None,
    ks: tuple[int, ...], limit: int | None, report: RetrievalReport,
) -> None:
    questions = [q for q in conversation.questions if q.evidence]
    if limit is not None:
        questions = quick_subset(questions, limit)
    depth = max(ks)
    with tempfile.TemporaryDirectory(prefix="mnemocord-eval-") as folder:
        async with Engine(eval_settings(settings, Path(folder)), embedder=embedder) as engine:
            agent_id = f"eval:{conversation.name}"
            started = time.perf_counter()
            ids = await load_history(engine, agent_id, conversation)
            stored = time.perf_counter()
            left = 0
            if engine.recall_indexer is not None:
                left = await engine.recall_indexer.drain()
                report.embedder = engine.embedder.model_id
            indexed = time.perf_counter()
            # Warm-up, not timed: loads the agent's search cache, as its first search would.
            await engine.recall.search(agent_id, "hello", 0, depth)
            report.load.append(round(os.getloadavg()[0], 2))
            cpu = time.process_time()
            for question in questions:
                began = time.perf_counter()
                page = await engine.recall.search(agent_id, question.question, 0, depth)
                seconds = time.perf_counter() - began
                found = [ids.get(m.id) for m in page.items]
                report.results.append(QuestionResult(
                    conversation.name, question.question, question.category, question.evidence,
                    found, {k: recall_at(found, question.evidence, k) for k in ks}, seconds,
                ))
            report.cpu_seconds += time.process_time() - cpu
            report.conversations.append(ConversationStats(
                conversation.name, len(conversation.turns), len(questions),
                stored - started, indexed - stored, left,
            ))


async def evaluate_retrieval(
    paths: Sequence[Path], settings: Settings, *, ks: Sequence[int] = DEFAULT_KS,
    quick: bool = False,
) -> RetrievalReport:
    tz = ZoneInfo(settings.timezone)
    conversations = [load(p, tz) for p in paths]
    if quick:
        conversations = conversations[:1]
    report = RetrievalReport(tuple(sorted(set(ks))))
    embedder = shared_embedder(settings)
    try:
        for conversation in conversations:
            await evaluate_conversation(
                conversation, settings, embedder, report.ks,
                QUICK_QUESTIONS if quick else None, report,
            )
    finally:
        if embedder is not None:
            await embedder.aclose()
    return report
