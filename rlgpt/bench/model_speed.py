"""Model-speed suite: the embedded model on the real prompts of each role, prefix cache on/off."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rlgpt.bench.config_fields import described
from rlgpt.bench.model_speed_probes import ROLES, VARIANTS, Probe, build_probes, schedule
from rlgpt.bench.model_speed_report import summarise
from rlgpt.bench.writers import load_average
from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.model_speed")

#: Tries per round: a server that goes away mid-round (killed from outside) is replaced once.
ROUND_ATTEMPTS = 2


def _server_default_slots() -> int:
    from rlgpt.llm.local_server import LocalServerConfig

    return int(LocalServerConfig().prefix_slots)


@dataclass
class ModelSpeedConfig:
    """What the model-speed suite measures and how often."""

    model: str = described(
        "qwen2.5-coder-1.5b", "Embedded model name (`rlgpt models`), without `local:`."
    )
    rounds: int = described(
        3,
        "Probe rounds per cache setting; each starts a fresh server, so "
        "its first call of each role is cold.",
    )
    repeats: int = described(2, "Repeated calls per role and round, after the cold ones (1-3).")
    max_tokens: int = described(768, "Answer budget per call (a run's llm_max_tokens).")
    temperature: float = described(0.0, "Sampling temperature (a run's default: greedy).")
    seed: int = described(0, "Sampling seed sent with each call.")
    cache_slots: int = field(
        default_factory=lambda: _server_default_slots(),
        metadata={
            "description": "Prefix-cache slots of the server when the cache is on (default: "
            "the local server's own default)."
        },
    )
    n_threads: int = described(2, "Server threads.")
    timeout: float = described(900.0, "Seconds per call at most.")

    def validate(self) -> None:
        """Raise ValueError on settings the suite cannot use."""
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if not 1 <= self.repeats < VARIANTS:
            raise ValueError(f"repeats must be 1 to {VARIANTS - 1}, got {self.repeats}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        if self.cache_slots < 1:
            raise ValueError(f"cache_slots must be positive, got {self.cache_slots}")


# ------------------------------------------------------------------ calls
def call_endpoint(
    base_url: str, model: str, probe: Probe, config: ModelSpeedConfig
) -> dict[str, Any]:
    """One chat completion; the server's token counts and timings, and the client's time."""
    import httpx

    body = {
        "model": model,
        "messages": probe.messages,
        "temperature": config.temperature,
        "seed": config.seed,
        "stream": False,
        **probe.extra_body,
        "max_tokens": config.max_tokens,
    }
    started = time.monotonic()
    response = httpx.post(f"{base_url}/chat/completions", json=body, timeout=config.timeout)
    call_seconds = time.monotonic() - started
    if response.status_code != 200:
        raise ValueError(
            f"the model endpoint answered {probe.role} variant {probe.variant} with HTTP "
            f"{response.status_code}: {response.text[:500]}"
        )
    data = response.json()
    usage = data.get("usage") or {}
    timings = data.get("timings") or {}
    if "prompt_ms" not in timings:
        raise ValueError("the endpoint reports no `timings`; the suite needs rlgpt's own server")
    prompt_seconds = float(timings["prompt_ms"]) / 1000
    generate_seconds = float(timings["predicted_ms"]) / 1000
    prompt_tokens = int(usage.get("prompt_tokens", 0))
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0) or 0)
    completion = int(usage.get("completion_tokens", 0))
    answer = str(data["choices"][0]["message"]["content"])
    return {
        "prompt_tokens": prompt_tokens,
        "cached_tokens": cached,
        "evaluated_tokens": prompt_tokens - cached,
        "completion_tokens": completion,
        "prompt_seconds": round(prompt_seconds, 3),
        "generate_seconds": round(generate_seconds, 3),
        "call_seconds": round(call_seconds, 3),
        "prompt_tps": round((prompt_tokens - cached) / max(prompt_seconds, 1e-9), 1),
        "generate_tps": round(completion / max(generate_seconds, 1e-9), 1),
        "finish_reason": data["choices"][0].get("finish_reason", ""),
        "answer_sha256": hashlib.sha256(answer.encode()).hexdigest()[:16],
        "answer": answer,
    }


Caller = Callable[[str, str, Probe, ModelSpeedConfig], dict[str, Any]]


def run_model_speed(
    config: ModelSpeedConfig,
    caller: Caller = call_endpoint,
    server_factory: Callable[[int], Any] | None = None,
    on_round: Callable[[dict[str, Any]], object] | None = None,
) -> dict[str, Any]:
    """Every round with the cache off, then on; returns config, probes, per-call records,
    the summary and whether every planned call was made (`complete`).

    Args:
        config: What to measure.
        caller: Makes one call (replaced in tests).
        server_factory: Makes a server context manager yielding its base URL from a number
            of prefix slots (default: `LocalServer` of the config's model).
        on_round: Receives the result so far after each round and cache setting (to write
            partial files a killed suite leaves behind).
    """
    from rlgpt.bench.progress import suite_progress
    from rlgpt.llm.local_server import LocalServer, LocalServerConfig

    config.validate()

    def default_factory(slots: int) -> Any:
        return LocalServer(
            LocalServerConfig(
                model=config.model,
                prefix_slots=slots,
                n_threads=config.n_threads,
                n_threads_batch=config.n_threads,
            )
        )

    make_server = server_factory or default_factory
    probes = build_probes(config.model, config.max_tokens)
    plan = schedule(config.rounds, config.repeats)
    modes = (("off", 0), ("on", config.cache_slots))
    calls: list[dict[str, Any]] = []
    servers: list[dict[str, Any]] = []
    total = len(modes) * sum(len(r) for r in plan)
    with suite_progress() as progress:
        bar = progress.add_task("model calls", total=total)
        # Cache off and on take turns round by round, so a change in the machine's load
        # during the suite touches both alike.
        for r, round_calls in enumerate(plan):
            for mode, slots in modes:
                for attempt in range(ROUND_ATTEMPTS):
                    try:
                        made = _one_round(
                            make_server(slots), config, probes, round_calls, (r, mode, slots),
                            caller, lambda text: progress.update(bar, description=text),
                        )  # fmt: skip
                    except ServerLost as exc:
                        servers.append({**exc.server, "lost": str(exc)})
                        log.warning("model_server_lost", round=r, cache=mode, error=str(exc))
                        if attempt + 1 == ROUND_ATTEMPTS:
                            raise ValueError(f"the model server was lost twice: {exc}") from exc
                        continue
                    servers.append(made[0])
                    calls.extend(made[1])
                    progress.advance(bar, len(made[1]))
                    break
                if on_round is not None:
                    on_round(_result(config, probes, servers, calls, total))
    return _result(config, probes, servers, calls, total)


class ServerLost(RuntimeError):
    """The server went away in the middle of a round (the round is made again)."""

    def __init__(self, message: str, server: dict[str, Any]) -> None:
        super().__init__(message)
        self.server = server


def _one_round(
    server: Any,
    config: ModelSpeedConfig,
    probes: Mapping[str, Sequence[Probe]],
    round_calls: Sequence[tuple[str, int, str]],
    where: tuple[int, str, int],
    caller: Caller,
    describe: Callable[[str], object],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One round on a fresh server: (its start record, the call records)."""
    import httpx

    r, mode, slots = where
    started = time.monotonic()
    records: list[dict[str, Any]] = []
    with server as base_url:
        info = {
            "cache": mode,
            "round": r,
            "prefix_slots": slots,
            "start_seconds": round(time.monotonic() - started, 2),
            "load_average": load_average(),
        }
        for role, variant, kind in round_calls:
            describe(f"cache {mode}, round {r + 1}: {role} ({kind})")
            try:
                made = caller(base_url, config.model, probes[role][variant], config)
            except httpx.TransportError as exc:
                raise ServerLost(f"{type(exc).__name__}: {exc}", info) from exc
            record = {"cache": mode, "round": r, "role": role, "variant": variant, "kind": kind,
                      **made}  # fmt: skip
            records.append(record)
            log.info("model_call", **{k: v for k, v in record.items() if k != "answer"})
    return info, records


def _result(
    config: ModelSpeedConfig,
    probes: Mapping[str, Sequence[Probe]],
    servers: list[dict[str, Any]],
    calls: list[dict[str, Any]],
    planned: int,
) -> dict[str, Any]:
    """The result so far: config, probes, servers, calls, their summary and `complete`."""
    return {
        "config": asdict(config),
        "complete": len(calls) == planned,
        "planned_calls": planned,
        "probes": {
            role: [
                {"variant": p.variant, "label": p.label, "messages_sha256": p.digest()}
                for p in probes[role]
            ]
            for role in ROLES
        },
        "servers": list(servers),
        "calls": list(calls),
        "summary": summarise(calls),
    }
