"""Reading LoCoMo-format conversations (Maharana et al., ACL 2024) for the memory evals.

A file holds one conversation: `speaker_a`/`speaker_b`, `session_N` turn lists with
`session_N_date_time`, and `qa` questions whose `evidence` names the turns (`dia_id`) that answer
them. Any file in this format works, not only the published ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
TURN_GAP = timedelta(seconds=30)  # turns of a session are a chat, not one instant

_SESSION = re.compile(r"^session_(\d+)$")
_DIA_ID = re.compile(r"D\d+:\d+")
_DATE_FORMATS = ("%I:%M %p on %d %B, %Y", "%I:%M %p on %d %b, %Y", "%Y-%m-%d %H:%M", "%Y-%m-%d")


@dataclass
class Turn:
    dia_id: str
    speaker: str
    text: str  # what was said, with a shared photo described the way an attachment would be
    created_at: datetime
    session: int


@dataclass
class Question:
    question: str
    answer: str
    evidence: list[str]
    category: int


@dataclass
class Conversation:
    name: str
    speakers: tuple[str, str]
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)


def parse_session_time(text: str, tz: ZoneInfo) -> datetime:
    cleaned = " ".join(text.split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(cleaned, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ValueError(f"unrecognised session date {text!r}")


def turn_text(raw: dict[str, object]) -> str:
    text = str(raw.get("text") or "").strip()
    caption = raw.get("blip_caption")
    if caption:
        text = f"{text}\n[shares a photo: {str(caption).strip()}]".strip()
    return text


def evidence_ids(raw: object) -> list[str]:
    """Evidence as a clean list; the data has a few entries like "D8:6; D9:17" in one string."""
    found: list[str] = []
    for item in raw if isinstance(raw, list) else [raw]:
        found.extend(_DIA_ID.findall(str(item)))
    return list(dict.fromkeys(found))


def load(path: Path, tz: ZoneInfo) -> Conversation:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if "conversation" in data:  # the combined locomo10.json nests each conversation
        data = {**data["conversation"], "qa": data.get("qa", [])}
    conversation = Conversation(Path(path).stem, (data["speaker_a"], data["speaker_b"]))
    sessions = sorted(
        int(m.group(1)) for key in data if (m := _SESSION.match(key)) and data[key]
    )
    for number in sessions:
        start = parse_session_time(data[f"session_{number}_date_time"], tz)
        for index, raw in enumerate(data[f"session_{number}"]):
            text = turn_text(raw)
            if not text:
                continue
            conversation.turns.append(Turn(
                raw["dia_id"], raw["speaker"], text, start + index * TURN_GAP, number
            ))
    for raw in data.get("qa", []):
        answer = raw.get("answer", raw.get("adversarial_answer", ""))
        conversation.questions.append(Question(
            raw["question"], str(answer), evidence_ids(raw.get("evidence", [])),
            int(raw.get("category", 0)),
        ))
    return conversation
