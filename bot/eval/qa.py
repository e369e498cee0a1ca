"""QA eval: the agent answers LoCoMo questions with its own tools; an LLM judge grades them.

Each conversation is stored as the agent's history (as in the retrieval eval); each question of
categories 1-4 then goes through `Engine.send` like a live message, and the agent has to search
its memory to answer. The judge follows the CORRECT/WRONG protocol of the Mem0 and Letta LoCoMo
comparisons: generous about wording and format, strict about facts and dates.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openai

from bot.agent import AgentEvent
from bot.config import Settings
from bot.embeddings import Embedder
from bot.engine import AgentSpec, Engine
from bot.eval.locomo import CATEGORIES, Conversation, Question, load
from bot.eval.retrieval import eval_settings, load_history, percentile, shared_embedder

ANSWERED_CATEGORIES = (1, 2, 3, 4)  # 5 (adversarial) has no gold answer to judge against
ASKER = "Examiner"

PERSONA = (
    "I am Sam, an assistant with a long memory. I listened to every conversation between {a} and"
    " {b}; all of it is in my recall memory, none of it in my context. When someone asks about"
    " them I always search my memory first (conversation_search with a few keywords, names or"
    " dates; conversation_search_date for a period; more than one search when the first does not"
    " settle it), then answer in one short sentence with the exact facts and dates I found."
    " Messages show when they were said, so I turn 'yesterday' or 'last week' into dates."
)
HUMAN = "The {asker} asks me questions about {a} and {b} to check what I remember."

JUDGE_SYSTEM = "You grade answers in a memory test. Reply with a JSON object only."
JUDGE_PROMPT = """Grade a generated answer against the gold answer to a question about past \
conversations between two people.

CORRECT: the generated answer states the same fact(s) as the gold answer. Be generous about \
wording, length, extra detail and format: a longer answer that contains the gold fact is correct; \
a date written another way ("7 May 2023", "May 7th, 2023") or stated relative to a date when it \
comes to the same day, month or year is correct.
WRONG: it states a different fact or a different date or period, leaves the fact out, or says \
it does not know.

Question: {question}
Gold answer: {gold}
Generated answer: {answer}

Reply as {{"reasoning": "<one sentence>", "label": "CORRECT" or "WRONG"}}."""

_LABEL = re.compile(r"\b(CORRECT|WRONG)\b")


@dataclass
class JudgeConfig:
    model: str
    base_url: str
    api_key: str

    @classmethod
    def from_settings(cls, settings: Settings, *, model: str, base_url: str | None = None,
                      api_key: str | None = None) -> JudgeConfig:
        """The judge's own endpoint if given, else the agent's."""
        return cls(model, base_url or settings.llm_base_url,
                   api_key or settings.llm_api_key.get_secret_value())


@dataclass
class QAResult:
    conversation: str
    question: str
    category: int
    gold: str
    answer: str
    correct: bool
    verdict: str
    tools: list[str]
    prompt_tokens: int
    completion_tokens: int
    judge_tokens: int
    seconds: float


@dataclass
class QAReport:
    judge_model: str
    agent_model: str
    results: list[QAResult] = field(default_factory=list)

    def accuracy(self, category: int | None = None) -> tuple[int, float]:
        chosen = [r for r in self.results if category is None or r.category == category]
        return len(chosen), (sum(r.correct for r in chosen) / len(chosen) if chosen else 0.0)

    def summary(self) -> dict[str, Any]:
        seconds = sorted(r.seconds for r in self.results) or [0.0]
        count = max(1, len(self.results))
        searched = sum(1 for r in self.results if "conversation_search" in r.tools
                       or "conversation_search_date" in r.tools)
        return {
            "latency_s": {"mean": statistics.fmean(seconds), "p50": percentile(seconds, 50),
                          "p95": percentile(seconds, 95)},
            "tokens_per_question": {
                "prompt": sum(r.prompt_tokens for r in self.results) / count,
                "completion": sum(r.completion_tokens for r in self.results) / count,
                "judge": sum(r.judge_tokens for r in self.results) / count,
            },
            "tool_calls": dict(Counter(t for r in self.results for t in r.tools)),
            "questions_that_searched": searched,
        }

    def to_json(self) -> dict[str, Any]:
        count, overall = self.accuracy()
        categories = {}
        for number, name in CATEGORIES.items():
            n, value = self.accuracy(number)
            if n:
                categories[str(number)] = {"name": name, "questions": n, "accuracy": value}
        return {"agent_model": self.agent_model, "judge_model": self.judge_model,
                "overall": {"questions": count, "accuracy": overall}, "categories": categories,
                **self.summary(), "questions": [vars(r) for r in self.results]}

    def table(self) -> str:
        lines = [f"{'':<16}{'n':>5}{'accuracy':>10}"]
        for category, label in [(None, "overall")] + [(c, f"{c} {n}") for c, n in
                                                        CATEGORIES.items()]:
            n, value = self.accuracy(category)
            if n:
                lines.append(f"{label:<16}{n:>5}{value:>10.3f}")
        info = self.summary()
        tokens, latency = info["tokens_per_question"], info["latency_s"]
        lines.append(f"per question: {tokens['prompt']:.0f} prompt + {tokens['completion']:.0f}"
                     f" completion tokens (agent), {tokens['judge']:.0f} (judge);"
                     f" latency p50 {latency['p50']:.1f} s, p95 {latency['p95']:.1f} s")
        lines.append(f"searched memory in {info['questions_that_searched']} of"
                     f" {len(self.results)} questions; calls: {info['tool_calls']}")
        lines.append(f"agent model {self.agent_model}, judge model {self.judge_model}")
        return "\n".join(lines)


def parse_verdict(text: str) -> bool:
    """The judge's label; anything unreadable counts as WRONG."""
    try:
        start, end = text.index("{"), text.rindex("}") + 1
        label = str(json.loads(text[start:end]).get("label", ""))
    except (ValueError, AttributeError):
        found = _LABEL.findall(text.upper())
        label = found[-1] if found else ""
    return label.strip().upper() == "CORRECT"


async def judge_answer(client: openai.AsyncOpenAI, model: str, question: Question, answer: str
                       ) -> tuple[bool, str, int]:
    prompt = JUDGE_PROMPT.format(question=question.question, gold=question.answer,
                                 answer=answer or "(no answer)")
    response = await client.chat.completions.create(
        model=model, temperature=0,
        messages=[{"role": "system", "content": JUDGE_SYSTEM},
                  {"role": "user", "content": prompt}],
    )
    text = (response.choices[0].message.content or "") if response.choices else ""
    tokens = response.usage.total_tokens if response.usage else 0
    return parse_verdict(text), text, tokens


async def _usage_since(engine: Engine, agent_id: str, after: int) -> tuple[int, int, int]:
    row = await engine.store.fetchone(
        "SELECT COALESCE(MAX(id), ?), COALESCE(SUM(prompt_tokens), 0),"
        " COALESCE(SUM(completion_tokens), 0) FROM usage WHERE agent_id=? AND id>?",
        (after, agent_id, after),
    )
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


async def ask_conversation(
    conversation: Conversation, questions: list[Question], settings: Settings,
    embedder: Embedder | None, client: openai.AsyncOpenAI, judge: JudgeConfig, report: QAReport,
) -> None:
    a, b = conversation.speakers
    spec = AgentSpec(name="Sam", persona_text=PERSONA.format(a=a, b=b),
                     human_text=HUMAN.format(asker=ASKER, a=a, b=b))
    with tempfile.TemporaryDirectory(prefix="mnemocord-qa-") as folder:
        async with Engine(eval_settings(settings, Path(folder)), embedder=embedder) as engine:
            agent_id = f"eval-qa:{conversation.name}"
            await load_history(engine, agent_id, conversation, spec)
            if engine.recall_indexer is not None:
                await engine.recall_indexer.drain()
            last_usage, _, _ = await _usage_since(engine, agent_id, 0)
            for question in questions:
                tools: list[str] = []

                def sink(event: AgentEvent, calls: list[str] = tools) -> None:
                    if event.kind == "call" and event.name:
                        calls.append(event.name)

                began = time.perf_counter()
                turn = await engine.send(agent_id, question.question, sender_name=ASKER,
                                         on_event=sink)
                seconds = time.perf_counter() - began
                answer = "\n".join(turn.replies) or "\n".join(turn.notices)
                last_usage, prompt, completion = await _usage_since(engine, agent_id, last_usage)
                correct, verdict, judged = await judge_answer(client, judge.model, question, answer)
                report.results.append(QAResult(
                    conversation.name, question.question, question.category, question.answer,
                    answer, correct, verdict, tools, prompt, completion, judged, seconds,
                ))


async def evaluate_qa(paths: Sequence[Path], settings: Settings, judge: JudgeConfig, *,
                      limit: int | None = None) -> QAReport:
    tz = ZoneInfo(settings.timezone)
    report = QAReport(judge.model, settings.llm_model)
    client = openai.AsyncOpenAI(base_url=judge.base_url, api_key=judge.api_key or "not-needed",
                                timeout=settings.llm_timeout, max_retries=settings.llm_max_retries)
    embedder = shared_embedder(settings)
    remaining = limit
    try:
        for path in paths:
            conversation = load(path, tz)
            questions = [q for q in conversation.questions if q.category in ANSWERED_CATEGORIES]
            if remaining is not None:
                questions, remaining = questions[:remaining], max(0, remaining - len(questions))
            if questions:
                await ask_conversation(
                    conversation, questions, settings, embedder, client, judge, report
                )
            if remaining == 0:
                break
    finally:
        await client.close()
        if embedder is not None:
            await embedder.aclose()
    return report
