"""Command line: `mnemocord chat` (terminal), `mnemocord discord` (the bot), `mnemocord agents`,
`mnemocord doctor` (will the configured model work?)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from bot import redact
from bot.config import Settings
from bot.datalock import DataDirLocked


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mnemocord", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="talk to an agent in the terminal")
    chat.add_argument("--agent", default="default", help="agent name (resumes its memory)")
    chat.add_argument("--persona", help="persona file name from personas/ (for a new agent)")
    chat.add_argument("--human", help="human template from personas/humans/ (for a new agent)")
    chat.add_argument("--first", action="store_true", help="you speak first (no greeting)")
    chat.add_argument("--name", default="You", help="your name as the agent sees it")
    sub.add_parser("discord", help="run the Discord bot")
    sub.add_parser("agents", help="list stored agents")
    sub.add_parser("doctor", help="check that the configured LLM endpoint, model and embedder"
                   " will work (a short scripted conversation; nothing is stored)")
    return parser


async def _chat(settings: Settings, args: argparse.Namespace) -> None:
    from bot.engine import AgentSpec, Engine
    from bot.terminal import TerminalChat

    async with Engine(settings) as engine:
        chat = TerminalChat(engine, f"cli:{args.agent}", user_name=args.name)
        spec = AgentSpec(name=(args.persona or settings.default_persona).capitalize(),
                         persona=args.persona, human=args.human)
        await chat.start(spec, first=args.first)
        await chat.run()


async def _agents(settings: Settings) -> None:
    from bot.engine import Engine

    async with Engine(settings) as engine:
        for row in await engine.list_agents():
            print(f"{row['id']}\t{row['name']}\t{row['created_at']}")


async def _doctor(settings: Settings) -> int:
    from bot.doctor import Doctor

    print(f"Checking {settings.llm_model!r} at {redact.redact(settings.llm_base_url)} ...",
          flush=True)
    async with Doctor(settings, report=lambda v: print(v.line(), flush=True)) as doctor:
        passed = await doctor.full()
    print("All required checks passed." if passed else
          "Some required checks failed (✗): fix those before starting the bot.")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:
        # Named as the person sets them (environment or .env), without pydantic's prefix.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors())
        print(f"mnemocord: invalid configuration: {problems}", file=sys.stderr)
        return 2
    if args.command != "doctor":  # the doctor keeps its trial agent in a temporary folder
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if args.command != "discord":  # the bot sets up discord.py's own logging
        logging.basicConfig(
            # The doctor's verdict lines say what went wrong; the engine's own warnings about
            # the failures it provokes on purpose would only bury them.
            level="ERROR" if args.command == "doctor" else settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            filename=str(settings.data_dir / "mnemocord.log") if args.command == "chat" else None,
        )
    try:
        if args.command == "chat":
            asyncio.run(_chat(settings, args))
        elif args.command == "agents":
            asyncio.run(_agents(settings))
        elif args.command == "doctor":
            return asyncio.run(_doctor(settings))
        elif args.command == "discord":
            from bot.discordbot.run import run_bot

            return run_bot(settings)
    except KeyboardInterrupt:  # the engine closed first: everything accepted is stored
        if args.command == "chat":
            print("\nInterrupted. Memory is saved. Bye!", file=sys.stderr)
        return 130
    except (ValueError, DataDirLocked) as error:  # bad persona name, bad option: one clear line
        print(f"mnemocord: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
