"""Discord's limits on message components and autocomplete choices (both answer 400/50035).

Sources (discord/discord-api-docs):
  developers/components/reference.mdx       custom_id 1-100, button label max 80, an action
                                            row holds up to 5 buttons or one select, select
                                            options max 25 (label/value/description max 100),
                                            "Legacy messages allow up to 5 action rows"
  developers/change-log.mdx                 ("Raised Component Limits") 40 components in all
                                            with the IS_COMPONENTS_V2 flag
  developers/interactions/receiving-and-responding.mdx (Autocomplete) max 25 choices
  developers/interactions/application-commands.mdx (Option Choice Structure) choice name
                                            1-100, a string value up to 100 characters
"""

from __future__ import annotations

from typing import Any

from .errors import form_error

ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT = 1, 2, 3, 4
SELECT_TYPES = {3, 5, 6, 7, 8}
FLAG_COMPONENTS_V2 = 1 << 15
MAX_ROWS = 5
MAX_PER_ROW = 5
MAX_CUSTOM_ID = 100
MAX_LABEL = 80
MAX_CHOICES = 25
MAX_CHOICE_TEXT = 100

Path = list[str | int]


def _too_long(path: Path, limit: int) -> Exception:
    return form_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def _bad_length(path: Path, low: int, high: int) -> Exception:
    return form_error(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {low} and {high} in length.")


def _check_custom_id(path: Path, comp: dict[str, Any], seen: set[str]) -> None:
    custom_id = comp.get("custom_id")
    if custom_id is None:
        return
    if not 1 <= len(str(custom_id)) <= MAX_CUSTOM_ID:
        raise _bad_length([*path, "custom_id"], 1, MAX_CUSTOM_ID)
    if custom_id in seen:  # "Multiple components on the same message must not share" one
        raise form_error(
            [*path, "custom_id"],
            "COMPONENT_CUSTOM_ID_DUPLICATED",
            "Component custom id cannot be duplicated",
        )
    seen.add(str(custom_id))


def _check_child(path: Path, comp: dict[str, Any], seen: set[str]) -> None:
    kind = int(comp.get("type", 0))
    _check_custom_id(path, comp, seen)
    if kind == BUTTON and len(str(comp.get("label") or "")) > MAX_LABEL:
        raise _too_long([*path, "label"], MAX_LABEL)
    if kind == TEXT_INPUT and len(str(comp.get("label") or "")) > 45:
        raise _too_long([*path, "label"], 45)  # reference.mdx (Text Input, legacy label)
    if kind in SELECT_TYPES:
        options = comp.get("options") or []
        if len(options) > MAX_CHOICES:
            raise _too_long([*path, "options"], MAX_CHOICES)
        for j, opt in enumerate(options):
            for key in ("label", "value", "description"):
                if len(str(opt.get(key) or "")) > MAX_CHOICE_TEXT:
                    raise _too_long([*path, "options", j, key], MAX_CHOICE_TEXT)


def validate_components(components: list[dict[str, Any]], flags: int = 0) -> None:
    """Legacy layout: up to 5 top-level action rows, each with up to 5 buttons or 1 select."""
    if flags & FLAG_COMPONENTS_V2:
        return  # the v2 layout (40 in all) is not used by the bot; not modelled
    if len(components) > MAX_ROWS:
        raise _too_long(["components"], MAX_ROWS)
    seen: set[str] = set()
    for i, row in enumerate(components):
        path: Path = ["components", i]
        if int(row.get("type", 0)) != ACTION_ROW:
            raise form_error(
                [*path, "type"], "UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).'
            )
        children = row.get("components") or []
        if not 1 <= len(children) <= MAX_PER_ROW:
            raise _bad_length([*path, "components"], 1, MAX_PER_ROW)
        if any(int(c.get("type", 0)) in SELECT_TYPES for c in children) and len(children) > 1:
            # A select fills its row on its own ("or a single select component").
            raise form_error(
                [*path, "components"],
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            )
        for j, child in enumerate(children):
            _check_child([*path, "components", j], child, seen)


def validate_choices(choices: list[dict[str, Any]]) -> None:
    """An APPLICATION_COMMAND_AUTOCOMPLETE_RESULT's choices."""
    if len(choices) > MAX_CHOICES:
        raise _too_long(["data", "choices"], MAX_CHOICES)
    for i, choice in enumerate(choices):
        path: Path = ["data", "choices", i]
        if not 1 <= len(str(choice.get("name") or "")) <= MAX_CHOICE_TEXT:
            raise _bad_length([*path, "name"], 1, MAX_CHOICE_TEXT)
        value = choice.get("value")
        if isinstance(value, str) and len(value) > MAX_CHOICE_TEXT:
            raise _too_long([*path, "value"], MAX_CHOICE_TEXT)
        if value is None:
            raise form_error([*path, "value"], "BASE_TYPE_REQUIRED", "This field is required")
