"""Memory evals on LoCoMo-format conversations.

    python -m bot.eval locomo PATH... [--quick] [--json OUT] [--k 1,5,10,25]
    python -m bot.eval locomo-qa PATH... --judge-model M [--limit N] [--json OUT]

Settings (LLM endpoint, embedding model, time zone) come from the environment and .env, as for
the bot; every conversation gets a fresh temporary data directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.config import Settings


def _ks(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("--k takes numbers like 1,5,10,25") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("--k takes positive numbers like 1,5,10,25")
    return values


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot.eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    retrieval = sub.add_parser("locomo", help="evidence recall@k of conversation_search")
    retrieval.add_argument("paths", nargs="+", type=Path, help="LoCoMo-format JSON files")
    retrieval.add_argument("--quick", action="store_true",
                           help="first conversation, 40 questions across the categories (for CI)")
    retrieval.add_argument("--k", type=_ks, default=[1, 5, 10, 25], help="e.g. 1,5,10,25")
    retrieval.add_argument("--json", type=Path, help="also write the report here")
    qa = sub.add_parser("locomo-qa", help="answer accuracy, judged by an LLM")
    qa.add_argument("paths", nargs="+", type=Path, help="LoCoMo-format JSON files")
    qa.add_argument("--judge-model", default=os.environ.get("JUDGE_MODEL"),
                    help="judge model (env JUDGE_MODEL)")
    qa.add_argument("--judge-base-url", default=os.environ.get("JUDGE_BASE_URL"),
                    help="judge endpoint (env JUDGE_BASE_URL; default LLM_BASE_URL)")
    qa.add_argument("--judge-api-key", default=os.environ.get("JUDGE_API_KEY"),
                    help="judge key (env JUDGE_API_KEY; default LLM_API_KEY)")
    qa.add_argument("--limit", type=int, help="at most this many questions in all")
    qa.add_argument("--json", type=Path, help="also write the report here")
    return parser


def machine() -> dict[str, Any]:
    return {"cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "date": datetime.now(UTC).isoformat()}


async def _retrieval(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bot.eval.retrieval import evaluate_retrieval

    report = await evaluate_retrieval(args.paths, settings, ks=args.k, quick=args.quick)
    print(report.table())
    return report.to_json()


async def _qa(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    from bot.eval.qa import JudgeConfig, evaluate_qa

    judge = JudgeConfig.from_settings(
        settings, model=args.judge_model, base_url=args.judge_base_url, api_key=args.judge_api_key
    )
    report = await evaluate_qa(args.paths, settings, judge, limit=args.limit)
    print(report.table())
    return report.to_json()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    missing = [p for p in args.paths if not p.is_file()]
    if missing:
        print(f"no such file: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    if args.command == "locomo-qa" and not args.judge_model:
        print("locomo-qa needs --judge-model (or JUDGE_MODEL)", file=sys.stderr)
        return 2
    try:
        settings = Settings()
    except ValidationError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run = _retrieval if args.command == "locomo" else _qa
    result = asyncio.run(run(settings, args))
    if args.json:
        result = {"command": args.command, "paths": [str(p) for p in args.paths],
                  "machine": machine(), **result}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
