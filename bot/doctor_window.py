"""The doctor's context-window check: the window the server really runs the model with
(bot/windows.py asks it), against what one turn of the bot needs."""

from __future__ import annotations

import inspect

from bot import redact
from bot.config import Settings
from bot.doctor_hints import FAIL, OK, WARN, table_knows, window_fix

# Room the conversation itself needs beyond instructions, memory, tools and the answer.
MIN_CONVERSATION_TOKENS = 1500
# The window the fixes suggest: room for instructions, functions and a real conversation.
RECOMMENDED_WINDOW = 16384
# Below this the bot works, but summarizes after a few exchanges.
SMALL_WINDOW = 8192


async def server_window(settings: Settings, key: str, wait: float
                        ) -> tuple[int | None, str, bool]:
    """The window the server runs the model with (or None), where it came from or why it is
    unknown, and whether the server was asked at all."""
    try:
        # Written separately (bot/windows.py); until it is there the server is not asked.
        from bot.windows import server_window as ask  # type: ignore[import-not-found]
    except ImportError:
        return None, "this version cannot ask the server", False
    try:
        found = ask(settings.llm_base_url, key, settings.llm_model, timeout=wait)
        if inspect.isawaitable(found):
            found = await found
    except Exception as error:  # a window we cannot learn is a warning, not a failure
        return None, redact.redact(str(error))[:200] or type(error).__name__, True
    # bot.windows answers a WindowInfo (tokens, source) or None.
    tokens = getattr(found, "tokens", found)
    if isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 0:
        return tokens, str(getattr(found, "source", "") or ""), True
    return None, "it does not say", True


def room_needed(settings: Settings, fixed_tokens: int | None) -> int:
    """Tokens a turn needs: instructions, memory and functions, the answer, a conversation."""
    return (fixed_tokens or 0) + settings.llm_max_response_tokens + MIN_CONVERSATION_TOKENS


def window_verdict(settings: Settings, found: int | None, reason: str, asked: bool,
                   fixed_tokens: int | None) -> tuple[str, str, str]:
    """(mark, detail, fix) of the context window line."""
    configured = settings.context_window
    if found is None:
        # A server that was asked and does not say (OpenAI) runs the model's published window;
        # one that was not asked may run far less (Ollama's num_ctx).
        if asked and (settings.llm_context_window or table_knows(settings.llm_model)):
            source = ("LLM_CONTEXT_WINDOW" if settings.llm_context_window
                      else f"known for {settings.llm_model}")
            return OK, (f"{configured} tokens ({source}; the server does not report its own:"
                        f" {reason})"), ""
        return WARN, f"unknown ({reason}); the bot assumes {configured} tokens", (
            "set LLM_CONTEXT_WINDOW to the window the server really runs the model with")
    source = f", from {reason}" if reason else ""
    need = room_needed(settings, fixed_tokens)
    if fixed_tokens and found < need:
        return FAIL, (f"{found} tokens{source}: too small (instructions, memory and functions"
                      f" take {fixed_tokens}, the answer {settings.llm_max_response_tokens})"), (
            f"raise the server's window: {window_fix(need, RECOMMENDED_WINDOW, reason)}")
    if found < SMALL_WINDOW:
        fix = window_fix(RECOMMENDED_WINDOW, RECOMMENDED_WINDOW, reason)
        return WARN, (f"{found} tokens{source}: small (the bot summarizes after a few"
                      " exchanges)"), f"raise the server's window: {fix}"
    if found < configured:  # bot.windows makes the bot plan for the server's window
        return OK, (f"{found} tokens{source} (the bot uses it, not the {configured} it would"
                    " assume)"), ""
    return OK, f"{found} tokens{source} (the bot uses {configured})", ""
