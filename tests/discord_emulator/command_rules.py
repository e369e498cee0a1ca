"""Application-command schema rules, checked on create, edit and bulk overwrite.

Source: discord/discord-api-docs developers/interactions/application-commands.mdx --
  * Application Command Naming: CHAT_INPUT command and option names match
    ^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$ (unicode), in lower case where a letter has
    a lower-case variant; USER and MESSAGE names may be mixed case with spaces (1-32);
  * descriptions 1-100 for CHAT_INPUT commands and every option;
  * Option Structure: "Required options must be listed before optional options", names unique
    within an options array, up to 25 options (and 25 nested), choices max 25, autocomplete
    may not be set with choices, min_length 0-6000 and max_length 1-6000;
  * Option Choice Structure: name 1-100, a string value up to 100 characters;
  * localizations follow the same restrictions as the field they localize;
  * "a maximum of 8000 characters for combined name, description, and value properties for
    each command, its options (including subcommands and groups), and choices", counting
    only the longest localization of each field;
  * Registering a Command: 100 global CHAT_INPUT, 15 USER and 15 MESSAGE commands (the same
    per guild); over the limit: JSON code 30032 (developers/topics/opcodes-and-status-codes.mdx).
Violations answer 400 with code 50035 and an `errors` tree naming the field, as Discord does.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from .errors import ApiError, form_error

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP, STRING = 1, 2, 3
MAX_COMMANDS = {CHAT_INPUT: 100, USER: 15, MESSAGE: 15}
MAX_TOTAL = 8000
MAX_COMMANDS_REACHED = 30032


def _name_char(ch: str) -> bool:
    """One character of [-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]. The stdlib has no \\p{..}:
    letters and numbers by Unicode category, the two scripts (vowel signs included) by name."""
    if ch in "-_'" or unicodedata.category(ch)[0] in "LN":
        return True
    return unicodedata.name(ch, "").startswith(("DEVANAGARI ", "THAI "))


Path = list[str | int]


def _bad_length(path: Path, low: int, high: int) -> ApiError:
    return form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _too_long(path: Path, limit: int) -> ApiError:
    return form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _check_slash_name(path: Path, name: str) -> None:
    valid = 1 <= len(name) <= 32 and all(_name_char(ch) for ch in name)
    if not valid or name != name.lower():
        raise form_error(path, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")


def _check_text(path: Path, value: Any, low: int, high: int) -> None:
    if not low <= len(str(value if value is not None else "")) <= high:
        raise _bad_length(path, low, high)


def _check_localized(
    raw: dict[str, Any], path: Path, field: str, check: Any, required: bool = True
) -> None:
    if required or raw.get(field) is not None:
        check([*path, field], str(raw.get(field) if raw.get(field) is not None else ""))
    for locale, text in (raw.get(f"{field}_localizations") or {}).items():
        check([*path, f"{field}_localizations", locale], str(text))


def _longest(raw: dict[str, Any], field: str) -> int:
    texts = [
        str(raw.get(field) or ""),
        *map(str, (raw.get(f"{field}_localizations") or {}).values()),
    ]
    return max(len(t) for t in texts)


def _check_choices(path: Path, opt: dict[str, Any]) -> int:
    choices = opt.get("choices") or []
    if len(choices) > 25:
        raise _too_long([*path, "choices"], 25)
    if choices and opt.get("autocomplete"):
        raise form_error(
            [*path, "autocomplete"],
            "APPLICATION_COMMAND_OPTION_CHOICES_AND_AUTOCOMPLETE_INVALID",
            "Autocomplete and choices cannot both be set",
        )
    size = 0
    for j, choice in enumerate(choices):
        where: Path = [*path, "choices", j]
        _check_localized(choice, where, "name", lambda p, t: _check_text(p, t, 1, 100))
        value = choice.get("value")
        if isinstance(value, str) and len(value) > 100:
            raise _too_long([*where, "value"], 100)
        size += _longest(choice, "name") + len(str(value))
    return size


def _check_option(path: Path, opt: dict[str, Any], depth: int) -> int:
    kind = int(opt.get("type", 0))
    _check_localized(opt, path, "name", _check_slash_name)
    _check_localized(opt, path, "description", lambda p, t: _check_text(p, t, 1, 100))
    size = _longest(opt, "name") + _longest(opt, "description")
    if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
        # A group holds subcommands; a subcommand holds plain options (no further nesting).
        if depth >= (1 if kind == SUB_COMMAND_GROUP else 2):
            raise form_error(
                [*path, "type"],
                "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                "Subcommands cannot be nested this deep",
            )
        return size + _check_options(
            path, opt.get("options") or [], depth + 1, subcommands_only=kind == SUB_COMMAND_GROUP
        )
    if opt.get("options"):
        raise form_error(
            [*path, "options"],
            "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
            "Only subcommands and groups may have options",
        )
    if kind == STRING:
        for key, low in (("min_length", 0), ("max_length", 1)):
            bound = opt.get(key)
            if bound is not None and not low <= int(bound) <= 6000:
                raise form_error([*path, key], "NUMBER_TYPE_MAX", f"int value should be {low}-6000")
    return size + _check_choices(path, opt)


def _check_options(
    path: Path, options: list[dict[str, Any]], depth: int = 0, *, subcommands_only: bool = False
) -> int:
    if len(options) > 25:
        raise _too_long([*path, "options"], 25)
    seen_optional = False
    names: set[str] = set()
    size = 0
    for i, opt in enumerate(options):
        where: Path = [*path, "options", i]
        if subcommands_only and int(opt.get("type", 0)) != SUB_COMMAND:
            raise form_error(
                [*where, "type"],
                "APPLICATION_COMMAND_OPTION_TYPE_INVALID",
                "A subcommand group may only contain subcommands",
            )
        name = str(opt.get("name", ""))
        if name in names:
            raise form_error(
                [*where, "name"],
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                "Option names must be unique",
            )
        names.add(name)
        size += _check_option(where, opt, depth)
        if opt.get("required"):
            if seen_optional:
                raise form_error(
                    where,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
    return size


def validate_command(index: int | None, raw: dict[str, Any]) -> None:
    path: Path = [] if index is None else [index]
    kind = int(raw.get("type", CHAT_INPUT))
    if kind == CHAT_INPUT:
        _check_localized(raw, path, "name", _check_slash_name)
        _check_localized(raw, path, "description", lambda p, t: _check_text(p, t, 1, 100))
        size = _longest(raw, "name") + _longest(raw, "description")
        size += _check_options(path, raw.get("options") or [])
        if size > MAX_TOTAL:
            raise form_error(
                path, "APPLICATION_COMMAND_TOO_LARGE", f"Command exceeds maximum size ({MAX_TOTAL})"
            )
    else:
        _check_localized(raw, path, "name", lambda p, t: _check_text(p, t, 1, 32))


def check_command_count(commands: list[dict[str, Any]]) -> None:
    """At most 100 CHAT_INPUT and 15 each of USER and MESSAGE commands in one scope."""
    for kind, limit in MAX_COMMANDS.items():
        if sum(1 for c in commands if int(c.get("type", CHAT_INPUT)) == kind) > limit:
            raise ApiError(
                400,
                MAX_COMMANDS_REACHED,
                f"Maximum number of application commands reached ({limit})",
            )
