"""How the real OpenAI Chat Completions API validates a request, for the scripted server.

The scripted LLM must be at least as strict as the API it stands in for: a prompt that OpenAI
answers with HTTP 400 must fail the test, not pass because the double was lenient. Every rule
below names where it was observed (an error text quoted in a public issue thread, or the
openai-python request types). ``validate`` returns every violation; the server answers the first
with an OpenAI-shaped 400 body.

Model families differ in which parameters they accept: ``PROFILES`` is a small table that the next
provider profiles (Mistral's 9-character tool-call ids, DeepSeek's reasoning_content, ...) can
extend with more ``Profile`` rows and checks.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from openai.types.chat import completion_create_params


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken rule, as OpenAI reports it in ``{"error": {message, type, param, code}}``."""

    message: str
    param: str | None = None
    code: str | int | None = None
    # Other providers answer with other statuses and body shapes (llama.cpp: 500 with an integer
    # code; tests/providers/): `status` and `body`, when set, are what the server sends.
    status: int = 400
    body: dict[str, Any] | list[Any] | None = None

    def error_body(self) -> dict[str, Any] | list[Any]:
        if self.body is not None:
            return self.body
        return {"error": {"message": self.message, "type": "invalid_request_error",
                          "param": self.param, "code": self.code}}


# -- per model family -------------------------------------------------------------------------

ParamCheck = Callable[[str, Any], "Violation | None"]


def _use_max_completion_tokens(name: str, value: Any) -> Violation:
    # "Unsupported parameter: 'max_tokens' is not supported with this model. Use
    # 'max_completion_tokens' instead." (o1/o3-mini: teilomillet/gollm#33; gpt-5:
    # griptape-ai/ComfyUI-Griptape#312, which shows param/code; openai/openai-python#2046)
    return Violation(f"Unsupported parameter: '{name}' is not supported with this model. Use"
                     " 'max_completion_tokens' instead.", name, "unsupported_parameter")


def _only_default(default: float) -> ParamCheck:
    def check(name: str, value: Any) -> Violation | None:
        if value == default:
            return None
        # "Unsupported value: 'temperature' does not support 0 with this model. Only the default
        # (1) value is supported." (o1-mini: OpenHands/OpenHands#4131; gpt-5-mini:
        # QwenLM/qwen-code#921; gpt-5.4: johny-b/llmcomp#69)
        return Violation(f"Unsupported value: '{name}' does not support {value!r} with this"
                         f" model. Only the default ({default:g}) value is supported.",
                         name, "unsupported_value")
    return check


@dataclasses.dataclass(frozen=True)
class Profile:
    """What one model family accepts beyond the common request schema."""

    name: str
    model_pattern: re.Pattern[str]
    param_checks: dict[str, ParamCheck] = dataclasses.field(default_factory=dict)


# First match wins; the last row matches every model (plain chat models such as gpt-4o-mini).
PROFILES: list[Profile] = [
    # gpt-5-chat-* is the non-reasoning chat model of the gpt-5 family.
    Profile("openai-chat", re.compile(r"^gpt-5(\.\d+)?-chat")),
    Profile(
        "openai-reasoning",
        re.compile(r"^(o1|o3|o4)(-|$)|^gpt-5"),
        {"max_tokens": _use_max_completion_tokens, "temperature": _only_default(1)},
    ),
    Profile("openai-chat", re.compile(r"")),
]


def profile_for(model: str) -> Profile:
    return next(p for p in PROFILES if p.model_pattern.search(model))


# -- the common schema --------------------------------------------------------------------------

# The request fields the API knows: openai/openai-python
# src/openai/types/chat/completion_create_params.py (the installed client's own list). Anything
# else is "Unrecognized request argument supplied: <name>" (coroot/coroot#698,
# davidmigloz/langchain_dart#712, xlinx/sd-webui-decadetw-auto-prompt-llm#29).
KNOWN_PARAMS = frozenset(completion_create_params.CompletionCreateParamsStreaming.__annotations__)

# openai/openai-python src/openai/types/chat/chat_completion_message_param.py: the union of
# developer, system, user, assistant, tool and (deprecated) function message params.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Content part types per role: chat_completion_content_part_param.py (user),
# chat_completion_{system,developer,tool}_message_param.py (text only),
# chat_completion_assistant_message_param.py (text or refusal).
PART_TYPES = {
    "system": {"text"}, "developer": {"text"}, "tool": {"text"},
    "user": {"text", "image_url", "input_audio", "file"},
    "assistant": {"text", "refusal"},
}

# Function (tool) names: "'^[a-zA-Z0-9_-]+$'" for tools[i].function.name (mcp-use/mcp-use#90,
# Vortiago/mcp-azure-devops#30) and for messages[i].tool_calls[j].function.name (mcp-use#90), at
# most 64 characters ("'Google Search' does not match '^[a-zA-Z0-9_-]{1,64}$'",
# NobleMathews/mayil-ai-tests#48; microsoft/vscode#243602).
FUNCTION_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# The optional `name` of a message: "Invalid 'messages[5].name': string does not match pattern.
# Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'" (FlowiseAI/Flowise#2948;
# Goldziher/basemind.ai#248). A display name with spaces or emoji cannot go there raw.
MESSAGE_NAME = re.compile(r"^[a-zA-Z0-9_-]+$")
# "Invalid 'messages[3].tool_calls[0].id': string too long. Expected a string with maximum length
# 40" (microsoft/autogen#6377, langgenius/dify#28987, Portkey-AI/gateway#1062).
TOOL_CALL_ID_MAX = 40
TOOL_CHOICES = ("none", "auto", "required")


def _invalid_type(param: str, expected: str, value: Any) -> Violation:
    got = "null" if value is None else type(value).__name__
    return Violation(f"Invalid type for '{param}': expected {expected}, but got {got} instead.",
                     param, "invalid_type")


def _bad_pattern(param: str) -> Violation:
    return Violation(f"Invalid '{param}': string does not match pattern. Expected a string that"
                     " matches the pattern '^[a-zA-Z0-9_-]+$'.", param, "invalid_value")


def _content(role: str, content: Any, param: str) -> Violation | None:
    if isinstance(content, str):
        return None
    if content is None:
        # "Invalid value for 'content': expected a string, got null." (docker/docker-agent#63,
        # langchain-ai/langchainjs#4153, with param "messages.[0].content")
        return Violation("Invalid value for 'content': expected a string, got null.", param)
    if not isinstance(content, list):
        return _invalid_type(param, "a string or an array of content parts", content)
    allowed = PART_TYPES[role]
    for k, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in allowed:
            return Violation(f"Invalid value: {kind!r}. Supported values are: "
                             + ", ".join(repr(t) for t in sorted(allowed)) + ".",
                             f"{param}[{k}].type", "invalid_value")
        if kind == "text" and not isinstance(part.get("text"), str):
            return _invalid_type(f"{param}[{k}].text", "a string", part.get("text"))
    return None


def _tool_calls(calls: Any, at: str) -> tuple[list[str], Violation | None]:
    """The ids of an assistant message's tool calls, and the first thing wrong with them (every
    id is collected anyway, so one bad call does not make its result look like an orphan)."""
    param = f"{at}.tool_calls"
    if not isinstance(calls, list):
        return [], _invalid_type(param, "an array", calls)
    if not calls:
        # "Invalid 'messages[1].tool_calls': empty array. Expected an array with minimum length
        # 1, but got an empty array instead." (the API's minItems on tool_calls)
        return [], Violation(f"Invalid '{param}': empty array. Expected an array with minimum"
                             " length 1, but got an empty array instead.", param,
                             "empty_array")
    ids: list[str] = []
    problems: list[Violation] = []
    for j, call in enumerate(calls):
        here = f"{param}[{j}]"
        if not isinstance(call, dict):
            problems.append(_invalid_type(here, "an object", call))
            continue
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            problems.append(Violation(f"Missing required parameter: '{here}.id'.", f"{here}.id",
                                      "missing_required_parameter"))
            continue
        if len(call_id) > TOOL_CALL_ID_MAX:
            problems.append(Violation(
                f"Invalid '{here}.id': string too long. Expected a string with maximum length"
                f" {TOOL_CALL_ID_MAX}, but got a string with length {len(call_id)} instead.",
                f"{here}.id", "string_above_max_length"))
        if call_id in ids:
            # Two calls with one id cannot both be answered (agno-agi/agno#5116 quotes the
            # API's "Duplicate value for 'tool_call_id'"; openclaw/openclaw#47136).
            problems.append(Violation(f"Invalid parameter: Duplicate value for 'tool_call_id'"
                                      f" of '{call_id}' in '{param}'.", f"{here}.id"))
        ids.append(call_id)
        # The only tool-call type of Chat Completions: chat_completion_message_tool_call_param.py
        if call.get("type") != "function":
            problems.append(Violation(f"Invalid value: {call.get('type')!r}. Supported values"
                                      " are: 'function'.", f"{here}.type", "invalid_value"))
        function = call.get("function")
        if not isinstance(function, dict):
            problems.append(_invalid_type(f"{here}.function", "an object", function))
            continue
        name = function.get("name")
        if not isinstance(name, str) or not FUNCTION_NAME.match(name):
            problems.append(_bad_pattern(f"{here}.function.name"))
        if not isinstance(function.get("arguments"), str):
            # `arguments` is "the arguments to call the function with, as generated by the model
            # in JSON format": a string (chat_completion_message_tool_call_param.py, Function).
            problems.append(_invalid_type(f"{here}.function.arguments", "a string",
                                          function.get("arguments")))
    return ids, problems[0] if problems else None


def _unanswered(ids: list[str], index: int) -> Violation:
    # "An assistant message with 'tool_calls' must be followed by tool messages responding to each
    # 'tool_call_id'. The following tool_call_ids did not have response messages: ..." with
    # param "messages.[6].role" (router-for-me/CLIProxyAPI#2798, aliasrobotics/cai#111,
    # BerriAI/litellm#10083)
    return Violation("An assistant message with 'tool_calls' must be followed by tool messages"
                     " responding to each 'tool_call_id'. The following tool_call_ids did not"
                     f" have response messages: {', '.join(ids)}", f"messages.[{index}].role")


def validate_messages(messages: Any) -> list[Violation]:
    if not isinstance(messages, list):
        return [_invalid_type("messages", "an array", messages)]
    if not messages:
        return [Violation("Invalid 'messages': empty array. Expected an array with minimum length"
                          " 1, but got an empty array instead.", "messages", "empty_array")]
    found: list[Violation] = []
    awaiting: list[str] = []  # ids of the latest tool_calls not yet answered
    awaiting_from = 0
    answered: dict[str, int] = {}
    for i, message in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(message, dict):
            found.append(_invalid_type(at, "an object", message))
            continue
        role = message.get("role")
        if role not in ROLES:
            found.append(Violation(
                f"Invalid value: {role!r}. Supported values are: 'system', 'assistant', 'user',"
                " 'tool', 'function', and 'developer'.", f"{at}.role", "invalid_value"))
            continue
        if role != "tool" and awaiting:
            # A call must be answered before anything else is said, a user message included.
            found.append(_unanswered(awaiting, awaiting_from))
            awaiting = []
        name = message.get("name")
        if "name" in message and role not in ("tool", "function") and (
                not isinstance(name, str) or not MESSAGE_NAME.match(name)):
            found.append(_bad_pattern(f"{at}.name"))
        if role == "assistant":
            calls = message.get("tool_calls")
            if calls is not None:
                ids, problem = _tool_calls(calls, at)
                if problem:
                    found.append(problem)
                awaiting, awaiting_from = ids, i
            content = message.get("content")
            # Assistant content "Required unless tool_calls or function_call is specified"
            # (chat_completion_assistant_message_param.py).
            needs_content = content is not None or not (calls or message.get("function_call"))
            if needs_content and (problem := _content(role, content, f"messages.[{i}].content")):
                found.append(problem)
            continue
        if problem := _content(role, message.get("content"), f"messages.[{i}].content"):
            found.append(problem)
        if role != "tool":
            continue
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            found.append(Violation(f"Missing required parameter: '{at}.tool_call_id'.",
                                   f"{at}.tool_call_id", "missing_required_parameter"))
        elif call_id in awaiting:
            awaiting.remove(call_id)
            answered[call_id] = i
        elif call_id in answered:
            # "Invalid parameter: Duplicate value for 'tool_call_id' of 'call_…', in messages[7]
            # and messages[8]." (agno-agi/agno#5116, anomalyco/opencode#1211)
            found.append(Violation(
                f"Invalid parameter: Duplicate value for 'tool_call_id' of '{call_id}', in"
                f" messages[{answered[call_id]}] and messages[{i}].",
                f"messages.[{i}].tool_call_id"))
        else:
            # "Invalid parameter: messages with role 'tool' must be a response to a preceeding
            # message with 'tool_calls'." with param "messages.[3].role" (miurla/morphic#136,
            # smarter-sh/smarter#264; spelling as the API wrote it then)
            found.append(Violation(
                "Invalid parameter: messages with role 'tool' must be a response to a preceeding"
                " message with 'tool_calls'.", f"messages.[{i}].role"))
    if awaiting:
        found.append(_unanswered(awaiting, awaiting_from))
    return found


def validate_tools(tools: Any, tool_choice: Any) -> list[Violation]:
    found: list[Violation] = []
    if tools is not None:
        if not isinstance(tools, list):
            return [_invalid_type("tools", "an array", tools)]
        if not tools:
            found.append(Violation("Invalid 'tools': empty array. Expected an array with minimum"
                                   " length 1, but got an empty array instead.", "tools",
                                   "empty_array"))
        for i, tool in enumerate(tools):
            at = f"tools[{i}]"
            # chat_completion_function_tool_param.py: {"type": "function", "function": {...}}
            if not isinstance(tool, dict) or tool.get("type") != "function":
                found.append(Violation(f"Invalid value for '{at}.type'. Supported values are:"
                                       " 'function' and 'custom'.", f"{at}.type",
                                       "invalid_value"))
                continue
            function = tool.get("function")
            if not isinstance(function, dict):
                found.append(Violation(f"Missing required parameter: '{at}.function'.",
                                       f"{at}.function", "missing_required_parameter"))
                continue
            name = function.get("name")
            if not isinstance(name, str) or not FUNCTION_NAME.match(name):
                found.append(_bad_pattern(f"{at}.function.name"))
            params = function.get("parameters")
            # shared_params/function_definition.py: parameters is a JSON Schema object; the API
            # answers "Invalid schema for function '…': schema must be a JSON Schema of 'type:
            # "object"'" for anything else.
            if params is not None and (not isinstance(params, dict)
                                       or params.get("type") != "object"):
                found.append(Violation(
                    f"Invalid schema for function '{name}': schema must be a JSON Schema of"
                    f" 'type: \"object\"', got 'type: \"{(params or {}).get('type')}\"'.",
                    f"{at}.function.parameters", "invalid_function_parameters"))
            description = function.get("description")
            if description is not None and not isinstance(description, str):
                found.append(_invalid_type(f"{at}.function.description", "a string",
                                           description))
    if tool_choice is not None:
        if not tools:
            # "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are
            # specified." (the API's check; chat_completion_tool_choice_option_param.py)
            found.append(Violation("Invalid value for 'tool_choice': 'tool_choice' is only"
                                   " allowed when 'tools' are specified.", "tool_choice"))
        elif not (tool_choice in TOOL_CHOICES or (
                isinstance(tool_choice, dict) and tool_choice.get("type") == "function"
                and isinstance(tool_choice.get("function"), dict))):
            found.append(Violation(f"Invalid value: {tool_choice!r}. Supported values are:"
                                   " 'none', 'auto', and 'required'.", "tool_choice",
                                   "invalid_value"))
    return found


def validate(body: dict[str, Any]) -> list[Violation]:
    """Every rule the request breaks (empty: OpenAI would accept it)."""
    found = [
        Violation(f"Unrecognized request argument supplied: {key}")
        for key in body if key not in KNOWN_PARAMS
    ]
    model = body.get("model")
    if not isinstance(model, str) or not model:
        found.append(Violation("you must provide a model parameter", "model"))
        model = ""
    profile = profile_for(model)
    for key, check in profile.param_checks.items():
        if key in body and (problem := check(key, body[key])):
            found.append(problem)
    found += validate_messages(body.get("messages"))
    found += validate_tools(body.get("tools"), body.get("tool_choice"))
    found += validate_stream(body)
    return found


def validate_stream(body: dict[str, Any]) -> list[Violation]:
    """`stream` and `stream_options` as OpenAI checks them."""
    found = []
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        found.append(_invalid_type("stream", "a boolean", stream))
    options = body.get("stream_options")
    if options is not None:
        if stream is not True:
            # {"message": "The 'stream_options' parameter is only allowed when 'stream' is
            # enabled.", "type": "invalid_request_error", "param": "stream_options", "code":
            # null} (BerriAI/litellm#5803, from api.openai.com)
            found.append(Violation("The 'stream_options' parameter is only allowed when"
                                   " 'stream' is enabled.", "stream_options"))
        elif not isinstance(options, dict) or not isinstance(
                options.get("include_usage", False), bool):
            found.append(_invalid_type("stream_options", "an object with a boolean"
                                       " include_usage", options))
    return found
