"""A test-only Discord emulator (REST + gateway on 127.0.0.1) for the real discord.py client.

Typical use::

    emu = DiscordEmulator(bot_name="Mnemocord")
    await emu.start()
    alice = emu.create_user("alice", global_name="Alice")
    guild = emu.create_guild("Test Guild")
    emu.add_member(guild, alice)
    chan = emu.create_text_channel(guild, "general")
    async with emu.run_client(bot):          # patched(), login, connect, wait for guilds
        await emu.user_sends(alice, chan, f"hi {emu.bot_user.mention}")
        reply = await emu.wait_for_bot_message(chan)
        inter = await emu.invoke_slash(alice, chan, "memory", {"n": 3})
        resp = await inter.wait_done()
    await emu.stop()

Everything waits on emulator state changes (no polling sleeps).

Where things live:
  state.py    setup (create_user/guild/role/text_channel/thread, add_member, dm_channel,
              set_permissions, deny_bot, open_command) and reads (messages_in, bot_messages,
              typing_count, registered_commands, command_syncs, requests, typings)
  actions.py  user_sends[_dm], user_edits, user_types, delete_message, invoke_slash,
              invoke_context_menu, invoke_autocomplete, click_button, select_option,
              submit_modal -> EmuInteraction (wait_done / wait_expired / wait_error)
  emulator.py start/stop, patched(), run_client(), fail_next(), drop_gateway(),
              wait_for(), wait_for_bot_message(), wait_for_resume/identify/typing()
  clock.py    the emulator clock: advance_clock(seconds) jumps past the nonce window, the
              3-second and 15-minute interaction limits and rate-limit windows without sleeping
  ratelimit.py per-route buckets (per channel/guild/webhook) and the global 50/s limit;
              change emu.ratelimits.routes / .default / .global_limit to hit them sooner
Rules with their discord-api-docs sources: messaging.py, components.py, command_rules.py,
permissions.py, rest_interactions.py, ratelimit.py.
Knobs: interaction_deadline, interaction_token_ttl, nonce_window, upload_limit,
recommended_shards, privileged_intents_enabled. EmuInteraction.before_ack lists the REST requests
the bot made before acknowledging it; open_command(guild, name) is an admin's override of a
command's default_member_permissions. Message.pings says who a bot message really
notifies.
"""

from __future__ import annotations

from .emulator import DiscordEmulator
from .errors import ApiError
from .faults import Fault
from .gateway import ResumeRecord, Session
from .harness import run_client, wait_client
from .interactions import EmuInteraction
from .models import (
    AppCommand,
    Attachment,
    Channel,
    CommandSync,
    Guild,
    Member,
    Message,
    Pings,
    RequestRecord,
    Role,
    Typing,
    User,
)

__all__ = [
    "ApiError",
    "AppCommand",
    "Attachment",
    "Channel",
    "CommandSync",
    "DiscordEmulator",
    "EmuInteraction",
    "Fault",
    "Guild",
    "Member",
    "Message",
    "Pings",
    "RequestRecord",
    "ResumeRecord",
    "Role",
    "Session",
    "Typing",
    "User",
    "run_client",
    "wait_client",
]
