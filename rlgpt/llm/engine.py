"""The embedded inference engine: one GGUF model in llama.cpp (through cyllama), with a cache
of evaluated prompt prefixes so a role's long, unchanging system prompt is read once."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlgpt.llm.gbnf_check import GrammarError, check_grammar
from rlgpt.logging import get_logger

log = get_logger("rlgpt.llm.engine")


@dataclass(frozen=True)
class EngineConfig:
    """How the model is loaded and run."""

    n_ctx: int = field(default=8192, metadata={"description": "Context window in tokens."})
    n_threads: int = field(default=2, metadata={"description": "Threads for generation."})
    n_threads_batch: int = field(default=2, metadata={"description": "Threads for prompts."})
    n_batch: int = field(default=512, metadata={"description": "Prompt tokens per decode call."})
    prefix_slots: int = field(
        default=8,
        metadata={
            "description": "Evaluated prompts kept in memory (about 28 KB a token for the "
            "1.5B model): several per role that takes turns (the coder's few-shot order varies), "
            "so each keeps its prefix. 0 = off."
        },
    )


@dataclass(frozen=True)
class Sampling:
    """How one answer is sampled."""

    max_tokens: int = 768
    temperature: float = 0.0
    seed: int = 0
    repeat_penalty: float = 1.0
    top_p: float = 0.95
    top_k: int = 40
    grammar: str | None = None
    stop: tuple[str, ...] = ()


@dataclass
class Completion:
    """One answer and what it cost."""

    text: str
    finish_reason: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    prompt_seconds: float
    generate_seconds: float


class EngineError(RuntimeError):
    """A request the engine cannot serve (bad grammar, prompt longer than the window)."""


def _load_cyllama() -> Any:
    try:
        from cyllama.llama import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise EngineError(
            "the embedded engine needs the `cyllama` package (`pip install 'rlgpt[local-llm]'`)"
        ) from exc
    return llama_cpp


def schema_grammar(schema: dict[str, Any]) -> str:
    """A GBNF grammar admitting exactly the JSON documents of `schema`."""
    llama_cpp = _load_cyllama()
    try:
        return str(llama_cpp.json_schema_to_grammar(schema))
    except Exception as exc:  # the converter fails with assertions, type and key errors too
        raise EngineError(f"cannot turn the JSON schema into a grammar: {exc}") from exc


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


#: Grammars already checked, kept by their text.
_GRAMMARS_KEPT = 64


class LlamaEngine:
    """A loaded model answering chat requests one at a time (a lock serialises callers).

    The KV cache of sequence 0 holds the last prompt and answer. Before each request the
    engine picks, among that and up to `prefix_slots` saved states, the one sharing the
    longest token prefix with the new prompt, restores it if needed, drops what follows the
    shared part and evaluates only the rest.
    """

    def __init__(self, model_path: str | Path, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        self.model_path = str(model_path)
        self._llama = _load_cyllama()
        self._llama.disable_logging()
        self._llama.ggml_backend_load_all()
        params = self._llama.LlamaModelParams()
        params.n_gpu_layers = 0
        self.model = self._llama.LlamaModel(self.model_path, params)
        self.vocab = self.model.get_vocab()
        ctx_params = self._llama.LlamaContextParams()
        ctx_params.n_ctx = self.config.n_ctx
        ctx_params.n_batch = self.config.n_batch
        ctx_params.n_threads = self.config.n_threads
        ctx_params.n_threads_batch = self.config.n_threads_batch
        ctx_params.no_perf = True
        self.ctx = self._llama.LlamaContext(self.model, ctx_params)
        self.ctx.set_n_threads(self.config.n_threads, self.config.n_threads_batch)
        self.template = self.model.get_default_chat_template() or ""
        self._live: list[int] = []  # tokens whose keys and values are in sequence 0
        self._saved: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._good_grammars: OrderedDict[str, None] = OrderedDict()
        self._grammar_lock = threading.Lock()

    # ----------------------------------------------------------------- prompt
    def render(self, messages: Sequence[dict[str, str]]) -> str:
        """The prompt text for `messages`, through the model's own chat template."""
        from cyllama import api

        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        if self.template:
            try:
                return str(
                    api._apply_jinja_template_standalone(self.model, self.template, msgs, True)
                )
            except Exception as exc:  # the C template engine below covers simpler templates
                log.debug("jinja_template_failed", error=repr(exc))
            chat = [
                self._llama.LlamaChatMessage(role=m["role"], content=m["content"]) for m in msgs
            ]
            return str(self.model.chat_apply_template(self.template, chat, True))
        return "".join(f"{m['role']}: {m['content']}\n" for m in msgs) + "assistant: "

    def tokenize(self, text: str) -> list[int]:
        """Tokens of a rendered prompt (special tokens of the template parsed as such)."""
        add_bos = bool(self.vocab.get_add_bos())
        return list(self.vocab.tokenize(text, add_special=add_bos, parse_special=True))

    # ------------------------------------------------------------ prefix cache
    def _restore_best(self, tokens: list[int]) -> int:
        """Bring the best cached prefix into sequence 0; return how many tokens it covers."""
        best = common_prefix(self._live, tokens)
        best_key: tuple[int, ...] | None = None
        for key in self._saved:
            shared = common_prefix(key, tokens)
            if shared > best:
                best, best_key = shared, key
        if best_key is not None:
            self.ctx.memory_seq_rm(0, -1, -1)
            self.ctx.set_state_seq_data(self._saved[best_key], 0)
            self._saved.move_to_end(best_key)
            self._live = list(best_key)
        # At least one prompt token is evaluated: its logits give the first answer token.
        keep = min(best, len(tokens) - 1)
        if keep < len(self._live) and not self.ctx.memory_seq_rm(0, keep, -1):
            self.ctx.memory_seq_rm(0, -1, -1)
            keep = 0
        self._live = self._live[:keep]
        return keep

    def _forget(self) -> None:
        """Drop sequence 0 after a failed decode, whose cache no longer matches `_live`."""
        self.ctx.memory_seq_rm(0, -1, -1)
        self._live = []

    def _save_live(self) -> None:
        if self.config.prefix_slots <= 0 or not self._live:
            return
        key = tuple(self._live)
        # A saved state that is a prefix of this one is covered by it.
        for old in [k for k in self._saved if common_prefix(k, key) == len(k)]:
            del self._saved[old]
        self._saved[key] = bytes(self.ctx.get_state_seq_data(0))
        while len(self._saved) > self.config.prefix_slots:
            self._saved.popitem(last=False)

    def _decode(self, tokens: list[int]) -> None:
        step = self.config.n_batch
        for i in range(0, len(tokens), step):
            chunk = tokens[i : i + step]
            batch = self._llama.llama_batch_get_one(chunk, len(self._live))
            self.ctx.decode(batch)
            self._live.extend(chunk)

    # ---------------------------------------------------------------- grammar
    def check_grammar(self, grammar: str) -> None:
        """Raise EngineError unless the grammar sampler can safely use `grammar`."""
        with self._grammar_lock:
            if grammar in self._good_grammars:
                self._good_grammars.move_to_end(grammar)
                return
        try:
            check_grammar(grammar, token_check=self._token_problem)
        except GrammarError as exc:
            raise EngineError(f"the grammar is not usable: {exc}") from exc
        with self._grammar_lock:
            self._good_grammars[grammar] = None
            while len(self._good_grammars) > _GRAMMARS_KEPT:
                self._good_grammars.popitem(last=False)

    def prompt_tokens(self, messages: Sequence[dict[str, str]], sampling: Sampling) -> list[int]:
        """The prompt's tokens, once the request is known to be servable.

        Raises:
            EngineError: the prompt does not fit the context window, or the grammar is
                not usable.
        """
        prompt = self.tokenize(self.render(messages))
        if len(prompt) + 1 >= self.config.n_ctx:
            raise EngineError(
                f"the prompt has {len(prompt)} tokens; the context window is {self.config.n_ctx}"
            )
        if sampling.grammar:
            self.check_grammar(sampling.grammar)
        return prompt

    def _token_problem(self, spec: str, negated: bool) -> str | None:
        if spec.startswith("<[") and spec.endswith("]>"):
            token = int(spec[2:-2])
        else:
            ids = list(self.vocab.tokenize(spec, add_special=False, parse_special=True))
            if len(ids) != 1:
                return "not a single token of the model"
            token = int(ids[0])
        if negated:
            return None
        if token >= int(self.vocab.n_vocab):
            return "outside the vocabulary"
        if self.vocab.is_eog(token):
            return "an end-of-generation token cannot be required"
        if not self.vocab.token_to_piece(token, special=True):
            return "the token has no text"
        return None

    # ------------------------------------------------------------- generation
    def _sampler(self, sampling: Sampling) -> Any:
        params = self._llama.LlamaSamplerChainParams()
        params.no_perf = True
        sampler = self._llama.LlamaSampler(params)
        if sampling.grammar:
            try:
                sampler.add_grammar(self.vocab, sampling.grammar, "root")
            except Exception as exc:
                raise EngineError(f"the grammar does not parse: {exc}") from exc
        if sampling.repeat_penalty != 1.0:
            sampler.add_penalties(64, sampling.repeat_penalty, 0.0, 0.0)
        if sampling.temperature <= 0.0:
            sampler.add_greedy()
        else:
            sampler.add_top_k(sampling.top_k)
            sampler.add_top_p(sampling.top_p, 1)
            sampler.add_temp(sampling.temperature)
            sampler.add_dist(int(sampling.seed) & 0xFFFFFFFF)
        return sampler

    def generate(
        self,
        messages: Sequence[dict[str, str]],
        sampling: Sampling,
        on_text: Callable[[str], None] | None = None,
    ) -> Completion:
        """Answer a chat; `on_text` receives the answer's text as it grows (for streaming)."""
        prompt = self.prompt_tokens(messages, sampling)
        with self._lock:
            started = time.monotonic()
            cached = self._restore_best(prompt)
            try:
                self._decode(prompt[cached:])
            except (ValueError, RuntimeError, InterruptedError) as exc:
                self._forget()
                raise EngineError(f"prompt evaluation failed: {exc}") from exc
            prompt_done = time.monotonic()
            self._save_live()
            try:
                text, finish, generated = self._sample_answer(prompt, sampling, on_text)
            except (ValueError, RuntimeError, InterruptedError) as exc:
                self._forget()
                raise EngineError(f"generation failed: {exc}") from exc
            return Completion(
                text=text,
                finish_reason=finish,
                prompt_tokens=len(prompt),
                cached_tokens=cached,
                completion_tokens=generated,
                prompt_seconds=prompt_done - started,
                generate_seconds=time.monotonic() - prompt_done,
            )

    def _sample_answer(
        self, prompt: list[int], sampling: Sampling, on_text: Callable[[str], None] | None
    ) -> tuple[str, str, int]:
        sampler = self._sampler(sampling)
        answer: list[int] = []
        text, emitted = "", 0
        finish = "length"
        room = self.config.n_ctx - len(prompt) - 1
        try:
            for _ in range(min(sampling.max_tokens, room)):
                token = sampler.sample(self.ctx, -1)
                if self.vocab.is_eog(token):
                    finish = "stop"
                    break
                answer.append(token)
                text = self._detokenize(answer)
                stop_at = _first_stop(text, sampling.stop)
                if stop_at is not None:
                    text, finish = text[:stop_at], "stop"
                    break
                if on_text is not None and not text.endswith("\ufffd"):
                    # What could still turn into a stop string is held back.
                    ready = len(text) - _stop_overlap(text, sampling.stop)
                    if ready > emitted:
                        on_text(text[emitted:ready])
                        emitted = ready
                self._decode([token])
            else:
                finish = "length"
        finally:
            sampler.close()
        if on_text is not None and len(text) > emitted:
            on_text(text[emitted:])
        return text, finish, len(answer)

    def _detokenize(self, tokens: list[int]) -> str:
        return str(self.vocab.detokenize(tokens, remove_special=False, unparse_special=False))

    def close(self) -> None:
        """Free the context and the model."""
        with self._lock:
            self._saved.clear()
            self.ctx.close()
            self.model.close()


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None


def _stop_overlap(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins one of `stops`."""
    longest = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:n]):
                longest = n
                break
    return longest
