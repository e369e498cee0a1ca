"""`mnemocord discord`: start the bot, with one clear line for every startup problem."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import discord

from bot import redact
from bot.config import Settings
from bot.datalock import DataDirLocked
from bot.discordbot.bot import Mnemocord
from bot.doctor import Doctor
from bot.engine import Engine
from bot.tasks import observe

log = logging.getLogger(__name__)


class StartupError(Exception):
    """A problem the person running the bot must fix; the message says how."""


async def check_llm(engine: Engine) -> None:
    """The doctor's quick checks (reachable, key, model, tools), one printed line each; the
    first that fails stops the start with its fix (`mnemocord doctor` checks the rest)."""
    async with Doctor(engine.settings, report=lambda v: print(v.line(), flush=True)) as doctor:
        await doctor.quick()
    failed = next((v for v in doctor.verdicts if v.failed), None)
    if failed is not None:
        # The verdict is redacted already: the URL may carry credentials (user:password@).
        raise StartupError(redact.redact(f"{failed.check}: {failed.detail}; {failed.fix}"))


async def serve(settings: Settings, *, check: bool = True) -> None:
    token = settings.discord_token.get_secret_value().strip()
    if not token:
        raise StartupError("DISCORD_TOKEN is not set (see .env.example)")
    async with Engine(settings) as engine:
        if check:
            await check_llm(engine)
        bot = Mnemocord(engine, settings)
        loop = asyncio.get_running_loop()
        closing: set[asyncio.Task[None]] = set()  # held until done (the loop keeps weak ones)

        def close_on_signal() -> None:
            task = observe(asyncio.ensure_future(bot.close()), "closing the bot after a signal",
                           log)
            closing.add(task)
            task.add_done_callback(closing.discard)

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, close_on_signal)
        try:
            async with bot:
                await bot.start(token)
        except discord.LoginFailure:
            raise StartupError("Discord rejected DISCORD_TOKEN; copy the bot token again from"
                               " the developer portal (Bot → Reset Token)") from None
        except discord.PrivilegedIntentsRequired:
            raise StartupError("the Message Content intent is not enabled; turn it on in the"
                               " developer portal (Bot → Privileged Gateway Intents)") from None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


def run_bot(settings: Settings) -> int:
    discord.utils.setup_logging(level=getattr(logging, settings.log_level.upper(), logging.INFO),
                                root=True)
    try:
        asyncio.run(serve(settings))
    except (StartupError, DataDirLocked) as error:
        print(f"mnemocord: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
