"""The scripted chat model: the one stand-in for a real model, used by unit tests.

Usage::

    with scripted_backend("scripted") as model:
        model.answers = ['{"route": "end"}']
        # any role whose model string is "scripted:<anything>" now gets these answers
        ...

(the `scripted` fixture of tests/conftest.py does this for a test).

Each answer is used once, in order. An answer may be:

- a string: the reply text;
- an `AIMessage`: returned as is (e.g. with `response_metadata={"finish_reason": "length"}`
  or tool calls);
- an exception instance: raised by the call, as a client raises it once its own retries
  are spent (e.g. an `openai.RateLimitError`);
- a callable taking the prompt's messages and returning any of the above.

The model records every prompt in `prompts` and the call's extra keyword arguments (how
the backend asked for structured output) in `call_kwargs`. Token counts in
`usage_metadata` are characters / 4, so accounting can be checked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field, PrivateAttr

from rlgpt import plugins

Answer = str | AIMessage | BaseException | Callable[[list[BaseMessage]], Any]


def _tokens(text: str) -> int:
    return max(1, len(text) // 4)


class ScriptedChatModel(BaseChatModel):
    """A chat model that replies with a scripted list of answers, in order."""

    answers: list[Any] = Field(default_factory=list, description="Answers, used once each.")
    prompts: list[list[BaseMessage]] = Field(
        default_factory=list, description="Every prompt received, in order."
    )
    call_kwargs: list[dict[str, Any]] = Field(
        default_factory=list, description="Extra keyword arguments of every call."
    )
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _next: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    @property
    def remaining(self) -> int:
        """How many answers are still unused."""
        return len(self.answers) - self._next

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            self.prompts.append(list(messages))
            self.call_kwargs.append(dict(kwargs))
            if self._next >= len(self.answers):
                raise RuntimeError(
                    f"ScriptedChatModel ran out of answers after {len(self.answers)} call(s)"
                )
            answer = self.answers[self._next]
            self._next += 1
        if callable(answer) and not isinstance(answer, BaseException | AIMessage):
            answer = answer(list(messages))
        if isinstance(answer, BaseException):
            raise answer
        message = answer if isinstance(answer, AIMessage) else AIMessage(content=str(answer))
        if message.usage_metadata is None:
            prompt_text = "".join(str(m.content) for m in messages)
            reply_tokens = _tokens(str(message.content))
            message = message.model_copy(
                update={
                    "usage_metadata": {
                        "input_tokens": _tokens(prompt_text),
                        "output_tokens": reply_tokens,
                        "total_tokens": _tokens(prompt_text) + reply_tokens,
                    }
                }
            )
        return ChatResult(generations=[ChatGeneration(message=message)])


class ScriptedBackend:
    """An `rlgpt.llms` backend that hands out one `ScriptedChatModel` for every model name.

    Args:
        model: The scripted model every role using this backend talks to.
        supports_grammar: Pretend to support grammars (code answers are then plain code,
            and the grammar arrives in the model's `call_kwargs`).
    """

    def __init__(self, model: ScriptedChatModel, supports_grammar: bool = False) -> None:
        self.model = model
        self.supports_grammar = supports_grammar

    def chat_model(self, model_name: str, settings: Any) -> BaseChatModel:
        """The scripted model (whatever the name)."""
        return self.model

    def structured_kwargs(
        self, model_name: str, name: str, schema: dict[str, Any], settings: Any
    ) -> dict[str, Any]:
        """Records which schema was asked for."""
        return {"schema_name": name}

    def grammar_kwargs(self, model_name: str, grammar: str, settings: Any) -> dict[str, Any]:
        """Records the grammar."""
        return {"grammar": grammar}


@contextmanager
def scripted_backend(name: str, supports_grammar: bool = False) -> Iterator[ScriptedChatModel]:
    """A new scripted model behind every `<name>:<anything>` model string, for the block.

    Args:
        name: The backend name registered in `rlgpt.llms` (removed again on exit).
        supports_grammar: Passed on to `ScriptedBackend`.
    """
    model = ScriptedChatModel(answers=[])
    plugins.llms.register(name, ScriptedBackend(model, supports_grammar=supports_grammar))
    try:
        yield model
    finally:
        plugins.llms.unregister(name)
