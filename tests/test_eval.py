"""The memory evals end to end: retrieval recall on LoCoMo files, judged QA on a scripted server."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from bot.eval.__main__ import main as eval_main
from bot.eval.qa import JudgeConfig, evaluate_qa
from bot.eval.retrieval import evaluate_retrieval
from bot.messages import unpack_tool_result
from tests.llm_server import ScriptedLLM, Step, call, last_user_text, say

LOCOMO = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "locomo"
KS = (1, 5, 10, 25)


def turn(dia_id: str, speaker: str, text: str, **extra: str) -> dict[str, str]:
    return {"speaker": speaker, "dia_id": dia_id, "text": text, **extra}


SYNTHETIC: dict[str, Any] = {
    "speaker_a": "Alice",
    "speaker_b": "Bob",
    "session_1_date_time": "10:00 am on 1 May, 2023",
    "session_1": [
        turn("D1:1", "Alice", "Hi Bob! How was your week?"),
        turn("D1:2", "Bob", "Busy but good. I ran the marathon in Lisbon on Sunday."),
        turn("D1:3", "Alice", "Amazing! I finally started saxophone lessons."),
        turn("D1:4", "Bob", "That is great, you always wanted to play music."),
        turn("D1:5", "Alice", "Yes, my teacher is very patient.",
             blip_caption="a photo of a music stand in a sunny room"),
        turn("D1:6", "Bob", "See you next week!"),
    ],
    "session_2_date_time": "6:30 pm on 3 June, 2023",
    "session_2": [
        turn("D2:1", "Bob", "Hey Alice, I just got back from my cousin's wedding in Porto."),
        turn("D2:2", "Alice", "Congratulations to them! How was it?"),
        turn("D2:3", "Bob", "Lovely, lots of dancing."),
        turn("D2:4", "Alice", "I cooked a huge paella today for my neighbours."),
        turn("D2:5", "Bob", "Save me some next time!"),
        turn("D2:6", "Alice", "Deal!"),
    ],
    "qa": [
        {"question": "Which instrument did Alice start lessons for?", "answer": "saxophone",
         "evidence": ["D1:3"], "category": 4},
        # Two evidence turns in one string, as the published data sometimes has them.
        {"question": "Where did Bob run the marathon and attend the wedding?",
         "answer": "Lisbon and Porto", "evidence": ["D1:2; D2:1"], "category": 1},
        {"question": "What did Alice cook on 3 June, 2023?", "answer": "paella",
         "evidence": ["D2:4"], "category": 2},
        {"question": "What is Alice's favourite colour?", "answer": "unknown", "evidence": [],
         "category": 4},  # no evidence: not scored for retrieval
        {"question": "What instrument did Bob start lessons for?",
         "adversarial_answer": "saxophone", "evidence": ["D1:3"], "category": 5},
    ],
}


@pytest.fixture
def local_settings(make_settings: Callable[..., Settings], local_model_dir: Path) -> Settings:
    return make_settings(embedding_provider="local", local_embedding_model_dir=local_model_dir)


@pytest.fixture
def synthetic(tmp_path: Path) -> Path:
    path = tmp_path / "synthetic.json"
    path.write_text(json.dumps(SYNTHETIC), encoding="utf-8")
    return path


async def test_quick_retrieval_eval_on_real_locomo(local_settings: Settings) -> None:
    path = LOCOMO / "26.json"
    if not path.is_file():
        pytest.skip(f"LoCoMo data not found at {LOCOMO}")
    report = await evaluate_retrieval([path], local_settings, ks=KS, quick=True)
    data = report.to_json()
    assert data["ks"] == list(KS) and data["overall"]["questions"] == 40
    assert data["embedder"].startswith("local:")  # message vectors were computed and used
    assert [c.unembedded for c in report.conversations] == [0]
    for block in [data["overall"], *data["categories"].values()]:
        assert set(block["recall"]) == {str(k) for k in KS}
        assert all(0.0 <= v <= 1.0 for v in block["recall"].values())
        values = [block["recall"][str(k)] for k in KS]
        assert values == sorted(values)  # recall can only grow with k
    assert set(data["categories"]) == {"1", "2", "3", "4", "5"}  # 8 of each
    # Chance is about 5/419 = 0.01. This stratified subset measured 0.53 (it over-represents the
    # hard multi-hop and open-domain questions); 0.40 is 30x chance with room for another CPU's
    # slightly different int8 arithmetic reordering a few results.
    assert data["overall"]["recall"]["5"] >= 0.40
    assert data["search_latency_ms"]["p50"] > 0


async def test_retrieval_eval_exact_on_synthetic_file(local_settings: Settings, synthetic: Path,
                                                      tmp_path: Path) -> None:
    report = await evaluate_retrieval([synthetic], local_settings, ks=KS)
    data = report.to_json()
    # 4 questions with evidence; only the two-evidence one misses at k=1 (its second turn is #2).
    assert data["overall"]["questions"] == 4
    assert data["overall"]["recall"] == {"1": 0.875, "5": 1.0, "10": 1.0, "25": 1.0}
    assert data["categories"]["1"]["recall"]["1"] == 0.5
    for category in ("2", "4", "5"):
        assert data["categories"][category]["recall"] == {str(k): 1.0 for k in KS}
    found = {q["question"]: q["found"] for q in data["questions"]}
    assert found["Which instrument did Alice start lessons for?"][0] == "D1:3"
    assert set(found["Where did Bob run the marathon and attend the wedding?"][:2]) == {
        "D1:2", "D2:1"}
    assert found["What did Alice cook on 3 June, 2023?"][0] == "D2:4"
    assert len(found["What did Alice cook on 3 June, 2023?"]) == 12  # all turns, in some order


def test_eval_command_line_writes_json(synthetic: Path, tmp_path: Path, local_model_dir: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("LOCAL_EMBEDDING_MODEL_DIR", str(local_model_dir))
    monkeypatch.setenv("EMBEDDING_PROVIDER", "local")
    out = tmp_path / "report.json"
    assert eval_main(["locomo", str(synthetic), "--k", "1,5", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "R@1" in printed and "R@5" in printed and "search latency" in printed
    data = json.loads(out.read_text())
    assert data["overall"]["recall"] == {"1": 0.875, "5": 1.0}
    assert data["machine"]["cores"] >= 1


def _scripted_agent_and_judge(judge_model: str) -> Callable[[dict[str, Any]], Step]:
    """The agent searches with the question, then answers with the best result's text; the
    judge calls an answer CORRECT when it contains the gold answer."""

    def handler(request: dict[str, Any]) -> Step:
        if request["model"] == judge_model:
            prompt = request["messages"][-1]["content"]
            gold = re.search(r"Gold answer: (.*)", prompt)
            answer = re.search(r"Generated answer: (.*)", prompt)
            assert gold and answer
            label = "CORRECT" if gold[1].lower() in answer[1].lower() else "WRONG"
            return say(json.dumps({"reasoning": "scripted", "label": label}))
        last = request["messages"][-1]
        if last["role"] == "tool":
            found = unpack_tool_result(last["content"])[1].splitlines()
            best = found[1].split(": ", 1)[1] if len(found) > 1 else "I don't know."
            return call("send_message", message=best)
        question = json.loads(last_user_text(request))["text"]
        return call("conversation_search", query=question, request_heartbeat=True)

    return handler


async def test_qa_eval_plumbing_on_scripted_server(
    local_settings: Settings, synthetic: Path, llm: ScriptedLLM
) -> None:
    llm.handler = _scripted_agent_and_judge("judge-model")
    judge = JudgeConfig.from_settings(local_settings, model="judge-model")
    assert judge.base_url == llm.base_url
    report = await evaluate_qa([synthetic], local_settings, judge)
    data = report.to_json()
    # Categories 1-4 only; the question without evidence is still a question to answer.
    asked = [r.question for r in report.results]
    assert asked == [q["question"] for q in SYNTHETIC["qa"][:4]]
    assert all(r.tools == ["conversation_search"] for r in report.results)
    assert all(r.prompt_tokens > 0 and r.completion_tokens > 0 for r in report.results)
    assert all(r.judge_tokens > 0 and r.seconds > 0 for r in report.results)
    answers = {r.question: (r.answer, r.correct) for r in report.results}
    assert answers["Which instrument did Alice start lessons for?"] == (
        "Amazing! I finally started saxophone lessons.", True)
    assert answers["What did Alice cook on 3 June, 2023?"][1] is True
    # Accuracy is computed from the judge's verdicts: 2 of 4 CORRECT.
    assert data["overall"] == {"questions": 4, "accuracy": 0.5}
    assert data["categories"]["2"]["accuracy"] == 1.0
    assert data["categories"]["1"]["accuracy"] == 0.0
    assert data["questions_that_searched"] == 4
    judged = [r for r in llm.requests if r["model"] == "judge-model"]
    assert len(judged) == 4 and "Gold answer: paella" in judged[2]["messages"][-1]["content"]
    agent_requests = [r for r in llm.requests if r["model"] != "judge-model"]
    assert "search my memory first" in agent_requests[0]["messages"][0]["content"]  # the hint
