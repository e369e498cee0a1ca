"""The step loop of a turn: LLM calls, reading what the model answered, running its calls.

Real models answer in more ways than the API's happy path, and each is handled here: calls
written as text (bot/textcalls.py), reasoning beside or inside the content (kept as thoughts,
never sent), plain text where a function call belonged, an answer cut off at the output limit,
a call repeated with the same arguments, a turn that ends with nobody answered.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot import textcalls, tools
from bot.llm import Completion, ContextOverflow, LLMError, LLMUnreachable, replayable_calls
from bot.messages import ToolCall, pack_system_event, pack_tool_result, utcnow
from bot.windows import overflow_limit

if TYPE_CHECKING:
    from bot.agent import Services

log = logging.getLogger(__name__)

OVERFLOW_RETRIES = 2
# What bot/prompts/system.txt says about text with no function call ({plain_text}), so the
# prompt tells the model what PLAIN_TEXT_REPLIES makes of it (StepLoop._plain_answer).
PLAIN_TEXT_RULES = {
    True: "Text with no function call at all is sent as your reply only when it is your first"
    " answer to a person's message; after a function result or a message it stays private.",
    False: "Text with no function call at all stays private too.",
}
# The step that asks for a reply nobody got forces send_message (OpenAI's named tool_choice;
# servers that ignore it, such as Ollama, still get the request in words).
FORCE_REPLY = {"type": "function", "function": {"name": "send_message"}}
ASK_FOR_REPLY = ("You have not answered yet. Reply to the person now with send_message: it is the"
                 " only way they hear you.")
CUT_OFF_NOTE = " …\n(cut off: this reply reached the model's output limit)"


@dataclass
class Turn:
    """What the step loop knows about the turn in progress."""

    person: bool = False  # a person's message started it: someone waits for a reply
    called: bool = False  # a function ran (plain text after it is monologue)
    asked: bool = False  # the model was asked for the reply it had not given
    looping: bool = False  # a call came again with the same arguments
    max_tokens: int | None = None  # the raised output budget, once an answer was cut off
    seen: set[tuple[str, str]] = field(default_factory=set)


def _call_key(call: ToolCall) -> tuple[str, str]:
    """A call's identity for spotting repeats: the name and the arguments that matter."""
    try:
        arguments = tools.parse_arguments(call.arguments)
    except tools.ToolError:
        return call.name, call.arguments.strip()
    for noise in ("inner_thoughts", "request_heartbeat"):
        arguments.pop(noise, None)
    return call.name, json.dumps(arguments, sort_keys=True, ensure_ascii=False, default=str)


def _marked_cut_off(call: ToolCall) -> ToolCall:
    """send_message cut off at the output limit: the person is told it is not whole."""
    try:
        arguments = tools.parse_arguments(call.arguments)
    except tools.ToolError:
        return call
    message = arguments.get("message")
    if not isinstance(message, str) or not message.strip():
        return call
    arguments["message"] = message.rstrip() + CUT_OFF_NOTE
    return ToolCall(call.id, call.name, json.dumps(arguments, ensure_ascii=False), call.extra)


class StepLoop:
    """The turn's steps, as part of bot.agent.Agent (its state, buffer and commit live there)."""

    services: Services
    _turn: Turn
    _unsent: list[str]

    async def publish(self) -> None: ...  # bot.agent.Agent: commit and hand over the replies

    async def _steps(self) -> None:
        cap = self.services.step_cap
        for step in range(1, cap + 1):
            self._result.steps = step
            if await self._step():
                if self._unsent:  # said something, more to do: the person sees it now
                    await self.publish()
                continue
            turn = self._turn
            if turn.person and not self._result.replies:
                if not turn.asked and step < cap:
                    self._ask_for_reply()
                    continue
                self.notice("I went around in circles without managing to answer. Please try"
                            " again or rephrase.")
            return
        if not self._result.replies:
            self.notice(
                f"I went around in circles ({cap} steps) without managing to answer. Please try"
                " again or rephrase."
            )
        alert = f"Your last turn reached the limit of {cap} steps and was stopped."
        self.append(self.new_message(
            "user", "system_alert", pack_system_event("system_alert", alert, self.now_text())
        ))

    def _ask_for_reply(self) -> None:
        """A person is waiting and the model stopped without answering (a memory edit without
        request_heartbeat, monologue, an empty answer, a loop): one more step, told to reply,
        with send_message forced where the server honours tool_choice."""
        self._turn.asked = True
        self.append(self.new_message(
            "user", "system_alert", pack_system_event("system_alert", ASK_FOR_REPLY,
                                                      self.now_text()),
        ))

    async def _step(self) -> bool:
        """One LLM call and its function calls; returns whether to take another step."""
        completion = await self._complete()
        if completion.reasoning:
            # Shown as a thought, not replayed: Qwen3's model card ("No Thinking Content in
            # History") and DeepSeek's reasoning-model guide ("the CoT from previous rounds is
            # not concatenated into the context") keep old reasoning out of the prompt. A
            # provider that wants its reasoning field back (DeepSeek's thinking mode after a
            # tool call) needs that field replayed as it came, not this text in the content.
            self._emit("thought", completion.reasoning)
        calls, text = completion.tool_calls, completion.content
        if not calls and text:
            written = textcalls.extract(text, tools.TOOLS.keys() | tools.RETIRED.keys())
            calls, text = written.calls, written.text
        thoughts = (text or "").strip() or None
        cut = completion.finish_reason == "length"
        if not calls:
            return self._plain_answer(thoughts, cut, completion.extra)
        if thoughts:
            self._emit("thought", thoughts)
        replayed = replayable_calls(calls, self._fresh_call_id)
        assistant = self.append(self.new_message(
            "assistant", "assistant", thoughts, tool_calls=replayed, extra=completion.extra
        ))
        said: list[str] = []
        again = heartbeat = False
        for call, sent in zip(calls, replayed, strict=True):
            inner = tools.peek_thoughts(call.arguments)
            if inner and not thoughts:
                self._emit("thought", inner)
            spoken = call.name == "send_message"  # shown as the message itself, not as a call
            if not spoken:
                self._emit("call", call.arguments, name=call.name)
            outcome = await self._run(call, cut)
            if outcome.sent_message:
                said.append(outcome.sent_message)
            if not (spoken and outcome.ok):
                self._emit("result", outcome.message, name=call.name, ok=outcome.ok)
            again = again or not outcome.ok or tools.must_read(call.name)
            heartbeat = heartbeat or outcome.request_heartbeat
            self.append(self.new_message(
                "tool", "tool_result",
                pack_tool_result(outcome.ok, self._clip_output(outcome.message), self.now_text()),
                tool_call_id=sent.id, tool_name=call.name,
            ))
        if said:
            assistant.text = "\n\n".join(said)
        # A reply in the response ends the turn, as the prompt says: a memory edit's heartbeat
        # next to send_message would buy a second call with nothing left to say. A failure, or
        # a result still to be read (a search), gets its step all the same.
        again = again or (heartbeat and not said)
        if self._turn.looping:
            return False  # the same call again: more steps would only repeat it
        if cut and not said:
            again = True
        return again

    async def _run(self, call: ToolCall, cut: bool) -> tools.ToolOutcome:
        """Run one call, unless it already ran with the same arguments in this turn: its
        result is in the context, and running an edit again would apply it twice."""
        turn = self._turn
        key = _call_key(call)
        if key in turn.seen:
            turn.looping = True
            return tools.ToolOutcome(False, f"Not run again: {call.name} was already called with"
                                     " these arguments in this turn; its result is above.")
        turn.called = True
        if cut and call.name == "send_message":
            call = _marked_cut_off(call)
        outcome = await tools.execute(self, call.name, call.arguments)
        if outcome.ok:
            # Only a call that worked: a failed one may work the second time (an internal
            # error), and one that fails again is bounded by the step cap.
            turn.seen.add(key)
        return outcome

    def _plain_answer(self, thoughts: str | None, cut: bool,
                      extra: dict[str, Any] | None = None) -> bool:
        """An answer with no function call. It is the reply only when it answers a person
        directly (their message, or the request for a reply) and PLAIN_TEXT_REPLIES is on;
        after a function result or a reply it is inner monologue (bot/prompts/system.txt)."""
        turn = self._turn
        if not thoughts:
            if cut and not self._result.replies:
                budget = turn.max_tokens or self.services.llm.max_response_tokens
                raise LLMError(f"The model used its whole output budget ({budget} tokens)"
                               " without writing an answer (a thinking model can spend it all"
                               " on reasoning). Raise LLM_MAX_RESPONSE_TOKENS.")
            return False  # nothing said: asked for the reply if someone waits
        replies = (self.services.plain_text_replies and turn.person and not self._result.replies
                   and (turn.asked or not turn.called))
        if not replies:
            self._emit("thought", thoughts)
            self.append(self.new_message("assistant", "assistant", thoughts, extra=extra or {}))
            return False
        text = thoughts + CUT_OFF_NOTE if cut else thoughts
        # Store it as the send_message call it should have been, so the model keeps the format.
        call = ToolCall(self._fresh_call_id(), "send_message",
                        json.dumps({"message": text}, ensure_ascii=False))
        self.append(self.new_message(
            "assistant", "assistant", None, tool_calls=[call], text=text, extra=extra or {}
        ))
        self.append(self.new_message(
            "tool", "tool_result", pack_tool_result(True, "Message sent.", self.now_text()),
            tool_call_id=call.id, tool_name="send_message",
        ))
        self.deliver(text)
        return False

    async def _complete(self) -> Completion:
        """Call the LLM with the context fitted to the window; summarize and retry on overflow."""
        context = self.services.context
        await self.fit_context()
        for attempt in range(OVERFLOW_RETRIES + 1):
            messages, tokens = context.prompt(self, utcnow())
            try:
                completion = await self._chat(messages, context.tools)
            except ContextOverflow as error:
                if context.windows is not None:  # a window the error states is kept for good
                    limit = getattr(error, "limit", None) or overflow_limit(str(error))
                    await context.windows.overflowed(limit)
                if attempt == OVERFLOW_RETRIES:
                    break
                # Our count said it fits, the server disagrees: trust the server and shrink
                # the prompt well below what was just rejected (and below the new target).
                target = min(context.budget.target, tokens // 2) // (2**attempt)
                log.info("context overflow for %s; evicting to %d tokens", self.id, target)
                await self.evict(target)
                continue
            self.record_usage("chat", completion)
            if context.windows is not None and (notice := await context.windows.observe(
                    tokens, completion.usage.prompt_tokens)):
                self._emit("notice", notice)  # for the operator; the people see their reply
            if completion.finish_reason == "length" and self._turn.max_tokens is None:
                completion = await self._with_more_room(messages, context.tools, completion)
            return completion
        raise LLMError("The conversation does not fit the model's context window, even after"
                       " summarizing. Lower LLM_CONTEXT_WINDOW to the model's real size.")

    async def _with_more_room(
        self, messages: list[Any], offered: list[dict[str, Any]], cut: Completion
    ) -> Completion:
        """The answer was cut off at max_tokens (a thinking model's reasoning may have taken it
        all): ask once more with twice the budget, for the rest of the turn."""
        self._turn.max_tokens = 2 * self.services.llm.max_response_tokens
        log.info("answer of %s cut off at the output limit; retrying with %d tokens",
                 self.id, self._turn.max_tokens)
        try:
            completion = await self._chat(messages, offered)
        except ContextOverflow:
            return cut  # the larger budget does not fit the window: keep what came
        self.record_usage("chat", completion)
        return completion

    async def _chat(self, messages: list[Any], offered: list[dict[str, Any]]) -> Completion:
        llm, turn = self.services.llm, self._turn
        force = FORCE_REPLY if turn.asked and not self.services.forcing_refused else None
        try:
            return await llm.chat(messages, offered, max_tokens=turn.max_tokens,
                                  tool_choice=force)
        except (ContextOverflow, LLMUnreachable):
            raise
        except LLMError as error:
            if force is None:
                raise
            # A server that rejects a named tool_choice is asked without it, from now on.
            log.warning("LLM refused tool_choice send_message (%s); asking without it", error)
            self.services.forcing_refused = True
            return await llm.chat(messages, offered, max_tokens=turn.max_tokens)

