"""Keeping credentials out of logs and error text.

Servers echo keys back in errors (OpenAI: "Incorrect API key provided: sk-proj-****...2sQA";
some proxies print the whole key), and an exception's text travels into tracebacks. So every
log record is redacted when it is created — message, arguments and traceback — whichever
handler writes it (a file, the console, a test's capture). Redacted are the configured secrets
(whole, or echoed by their first characters), OpenAI-style keys, bearer tokens,
Discord-token-shaped strings, and credentials in URLs (userinfo, key-like query parameters).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

MARK = "[redacted]"
_GENERIC = [
    re.compile(r"\bsk-[A-Za-z0-9_*\-]{6,}"),  # OpenAI-style keys, also masked ones
    re.compile(r"(?i)\bbearer\s+[^\s'\"]+"),
    re.compile(r"\b[A-Za-z0-9_\-]{20,}\.[A-Za-z0-9_\-]{5,7}\.[A-Za-z0-9_\-]{25,}"),  # Discord
]
# Credentials inside URLs (a base URL in an error or a log line): the userinfo of
# scheme://user:password@host, and the values of key-like query parameters (?key=, ?api-key=).
_URL_PARTS = [
    (re.compile(r"(?<=://)[^/\s@?#'\"]+@"), MARK + "@"),
    (re.compile(r"(?i)([?&][\w.\-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature"
                r"|credential)[\w.\-]*=)[^&#\s'\"]+"), r"\1" + MARK),
]
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None
_lock = threading.Lock()
_installed = False


def protect(values: Iterable[str | None]) -> None:
    """Remember secrets to redact (short values are ignored: they would redact ordinary words)
    and make sure every log record is redacted from now on."""
    global _pattern
    with _lock:
        _secrets.update(v.strip() for v in values if v and len(v.strip()) >= 8)
        parts = []
        for secret in sorted(_secrets, key=len, reverse=True):
            parts.append(re.escape(secret))
            # An echo that keeps the first characters and masks or cuts the rest.
            parts.append(re.escape(secret[:8]) + r"[^\s'\"]*")
        _pattern = re.compile("|".join(parts)) if parts else None
    _install()


def redact(text: str) -> str:
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MARK, text)
    for generic in _GENERIC:
        text = generic.sub(MARK, text)
    for part, replacement in _URL_PARTS:
        text = part.sub(replacement, text)
    return text


def _install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        _installed = True
        make = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # a broken format string: leave it to logging to report
                return record
            record.msg, record.args = redact(message), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
                record.exc_text = record.exc_text.rstrip("\n")
                # Formatters render exc_info again when it is there (discord.py's colour
                # formatter always does: discord/utils.py _ColourFormatter.format), which would
                # print the unredacted traceback; every formatter prints exc_text without it.
                record.exc_info = None
            if record.stack_info:
                record.stack_info = redact(record.stack_info)
            return record

        logging.setLogRecordFactory(factory)
