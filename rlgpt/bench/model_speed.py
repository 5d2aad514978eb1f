"""Model-speed suite: the embedded model on the real prompts of each role, prefix cache on/off."""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlgpt.logging import get_logger

log = get_logger("rlgpt.bench.model_speed")

ROLES: tuple[str, ...] = ("planner", "coder", "critic")
#: Prompt variants per role: a call differs from the role's previous one in its last user
#: message only, as between the calls of a real run.
VARIANTS = 4
#: Tries per round: a server that goes away mid-round (killed from outside) is replaced once.
ROUND_ATTEMPTS = 2
#: Summary fields: (key in a call record, column title).
METRICS: tuple[tuple[str, str], ...] = (
    ("prompt_tokens", "prompt tokens"),
    ("cached_tokens", "cached tokens"),
    ("prompt_seconds", "prompt s"),
    ("generate_seconds", "generation s"),
    ("prompt_tps", "prompt tok/s"),
    ("generate_tps", "generated tok/s"),
    ("call_seconds", "call s"),
)


def _server_default_slots() -> int:
    from rlgpt.llm.local_server import LocalServerConfig

    return int(LocalServerConfig().prefix_slots)


@dataclass
class ModelSpeedConfig:
    """What the model-speed suite measures and how often."""

    model: str = field(
        default="qwen2.5-coder-1.5b",
        metadata={"description": "Embedded model name (`rlgpt models`), without `local:`."},
    )
    rounds: int = field(
        default=3,
        metadata={
            "description": "Probe rounds per cache setting; each starts a fresh server, so "
            "its first call of each role is cold."
        },
    )
    repeats: int = field(
        default=2,
        metadata={"description": "Repeated calls per role and round, after the cold ones (1-3)."},
    )
    max_tokens: int = field(
        default=768, metadata={"description": "Answer budget per call (a run's llm_max_tokens)."}
    )
    temperature: float = field(
        default=0.0, metadata={"description": "Sampling temperature (a run's default: greedy)."}
    )
    seed: int = field(default=0, metadata={"description": "Sampling seed sent with each call."})
    cache_slots: int = field(
        default_factory=lambda: _server_default_slots(),
        metadata={
            "description": "Prefix-cache slots of the server when the cache is on (default: "
            "the local server's own default)."
        },
    )
    n_threads: int = field(default=2, metadata={"description": "Server threads."})
    timeout: float = field(default=900.0, metadata={"description": "Seconds per call at most."})

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


@dataclass
class Probe:
    """One request of a role: its messages and the constraint a real node sends with them."""

    role: str
    variant: int
    label: str
    messages: list[dict[str, str]]
    extra_body: dict[str, Any]

    def digest(self) -> str:
        """SHA-256 of the messages (ties a result to the prompt text it was measured on)."""
        import json

        return hashlib.sha256(json.dumps(self.messages).encode()).hexdigest()[:16]


def _openai_messages(messages: Sequence[Any]) -> list[dict[str, str]]:
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return [{"role": roles[m.type], "content": str(m.content)} for m in messages]


# ------------------------------------------------------------------ probes
_PLANNER_VARIANTS: tuple[tuple[str, str | None], ...] = (
    ("crafter:collect_wood", None),
    ("crafter:place_table", None),
    (
        "crafter:make_wood_pickaxe",
        "task success 0% over 10 held-out episodes; make_wood_pickaxe 0%: the pickaxe needs a "
        "nearby table and wood; the plan makes it before either exists.",
    ),
    ("crafter:collect_stone", None),
)

_STEPS: dict[str, dict[str, Any]] = {
    "collect_wood": {
        "id": "collect_wood",
        "description": "Walk to a tree and collect wood.",
        "predicate": {"kind": "inventory", "name": "wood", "at_least": 1},
        "method": "code",
    },
    "place_table": {
        "id": "place_table",
        "description": "Place a table on a free cell nearby.",
        "predicate": {"kind": "achievement", "name": "place_table", "at_least": 1},
        "method": "code",
    },
    "make_wood_pickaxe": {
        "id": "make_wood_pickaxe",
        "description": "Make a wood pickaxe at a nearby table.",
        "predicate": {"kind": "inventory", "name": "wood_pickaxe", "at_least": 1},
        "method": "code",
    },
}

#: Coder requests: (step, feedback on the previous code, the plan's earlier steps).
_CODER_VARIANTS: tuple[tuple[str, str | None, tuple[str, ...]], ...] = (
    ("collect_wood", None, ()),
    ("place_table", None, ("collect_wood",)),
    (
        "collect_wood",
        "success 0% of 5 episodes: returned False at once in 4 episodes: no tree visible.",
        (),
    ),
    ("make_wood_pickaxe", None, ("collect_wood", "place_table")),
)

_PREVIOUS_PLAN: dict[str, Any] = {
    "sub_actions": [
        {
            "id": "make_wood_pickaxe",
            "description": "Make a wood pickaxe.",
            "predicate": {"kind": "inventory", "name": "wood_pickaxe", "at_least": 1},
            "method": "code",
            "reason": "A fixed sequence.",
        }
    ],
}

_PREVIOUS_CODE = (
    "def run(api):\n"
    '    if not api.seen("tree"):\n'
    "        return False\n"
    '    api.move_to("tree")\n'
    "    return api.do()\n"
)


def _critic_variant(index: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    plans = [
        ("crafter:collect_wood", ["collect_wood"]),
        ("crafter:place_table", ["collect_wood", "place_table"]),
        ("crafter:make_wood_pickaxe", ["collect_wood", "place_table", "make_wood_pickaxe"]),
        ("crafter:collect_stone", ["collect_wood", "place_table", "make_wood_pickaxe", "mine"]),
    ]
    task, ids = plans[index]
    plan = {
        "sub_actions": [
            {
                "id": sid,
                "description": sid.replace("_", " "),
                "predicate": {"kind": "achievement", "name": task.split(":")[1], "at_least": 1},
                "method": "rl" if sid == "mine" else "code",
                "reason": "",
            }
            for sid in ids
        ]
    }
    rates = [0.9, 0.4, 0.1, 0.0][: len(ids)]
    evaluation = {
        "task_success_rate": rates[-1],
        "episodes": 10,
        "subaction_success": dict(zip(ids, rates, strict=True)),
        "failures": [
            {"seed": 100_000 + i, "subaction": ids[-1], "reason": "returned False: not seen"}
            for i in range(2 + index)
        ],
    }
    return task, plan, evaluation


def build_probes(model: str, max_tokens: int) -> dict[str, list[Probe]]:
    """The requests of each role, built with the project's prompts and the Crafter adapter's
    manual and skill API, constrained as the nodes constrain them."""
    from rlgpt.actions.grammar import code_grammar
    from rlgpt.envs.base import load_adapter
    from rlgpt.llm.local import LocalBackend
    from rlgpt.llm.settings import LLMSettings
    from rlgpt.nodes.prompts import (
        coder_code_messages,
        critic_messages,
        planner_messages,
        planner_schema,
        skills_doc,
        verdict_schema,
    )

    adapter = load_adapter("crafter")
    manual, skills = adapter.manual(), skills_doc(adapter.skill_specs())
    vocabulary = adapter.vocabulary()
    backend = LocalBackend()
    settings = LLMSettings(model=f"local:{model}", max_tokens=max_tokens)
    plan_body = backend.structured_kwargs(model, "Plan", planner_schema(vocabulary), settings)
    code_body = backend.grammar_kwargs(
        model, code_grammar(adapter.skill_specs(), vocabulary), settings
    )
    probes: dict[str, list[Probe]] = {role: [] for role in ROLES}
    for i, (task_name, feedback) in enumerate(_PLANNER_VARIANTS):
        task = adapter.task(task_name)
        previous = _PREVIOUS_PLAN if feedback else None
        messages = planner_messages(task.name, task.description, manual, skills, feedback, previous)
        probes["planner"].append(
            Probe("planner", i, task_name + (" (re-plan)" if feedback else ""),
                  _openai_messages(messages), plan_body["extra_body"])
        )  # fmt: skip
    for i, (step_id, feedback, earlier) in enumerate(_CODER_VARIANTS):
        messages = coder_code_messages(
            _STEPS[step_id],
            manual,
            skills,
            feedback,
            _PREVIOUS_CODE if feedback else None,
            earlier=[_STEPS[e] for e in earlier],
        )
        probes["coder"].append(
            Probe("coder", i, step_id + (" (fix)" if feedback else ""),
                  _openai_messages(messages), code_body["extra_body"])
        )  # fmt: skip
    for i in range(VARIANTS):
        task_name, plan, evaluation = _critic_variant(i)
        ids = [s["id"] for s in plan["sub_actions"]]
        body = backend.structured_kwargs(model, "Verdict", verdict_schema(ids), settings)
        messages = critic_messages(task_name, plan, evaluation, [])
        probes["critic"].append(
            Probe("critic", i, task_name, _openai_messages(messages), body["extra_body"])
        )
    return probes


def schedule(rounds: int, repeats: int) -> list[list[tuple[str, int, str]]]:
    """Per round, the calls in order as (role, variant, kind): each role's cold call, then
    `repeats` passes over the roles in turn, so the cache must hold every role's prefix.

    Variants rotate between rounds, so over `repeats + 1` rounds each variant is the cold
    call once and a repeated call `repeats` times: cold and repeated calls then cover the
    same answers.
    """
    n = repeats + 1
    plan: list[list[tuple[str, int, str]]] = []
    for r in range(rounds):
        calls = [(role, r % n, "cold") for role in ROLES]
        for j in range(1, repeats + 1):
            calls += [(role, (r + j) % n, "repeated") for role in ROLES]
        plan.append(calls)
    return plan


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


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

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
    from rich.console import Console

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as progress:
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
            "load_average": _load_average(),
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


# ------------------------------------------------------------------ summary
def _stat(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(float(statistics.median(values)), 3),
        "min": round(float(min(values)), 3),
        "max": round(float(max(values)), 3),
        "n": len(values),
    }


def summarise(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per role and cache setting: median and range of each metric for cold and repeated
    calls, the repeated/cold ratio of the median call and prompt times, and whether the
    answers with the cache on equal those with it off."""
    rows: list[dict[str, Any]] = []
    answers: dict[tuple[str, str, int], set[str]] = {}
    for c in calls:
        answers.setdefault((c["cache"], c["role"], c["variant"]), set()).add(c["answer_sha256"])
    for role in ROLES:
        for mode in ("off", "on"):
            kinds: dict[str, dict[str, dict[str, float]]] = {}
            for kind in ("cold", "repeated"):
                chosen = [
                    c
                    for c in calls
                    if c["role"] == role and c["cache"] == mode and c["kind"] == kind
                ]
                if chosen:
                    kinds[kind] = {
                        key: _stat([float(c[key]) for c in chosen]) for key, _ in METRICS
                    }
            if not kinds:
                continue
            row: dict[str, Any] = {"role": role, "cache": mode, **kinds}
            if "cold" in kinds and "repeated" in kinds:
                for key in ("call_seconds", "prompt_seconds"):
                    cold = kinds["cold"][key]["median"]
                    row[f"ratio_{key}"] = (
                        round(kinds["repeated"][key]["median"] / cold, 3) if cold else None
                    )
            rows.append(row)
    for row in rows:
        if row["cache"] != "on":
            continue
        same = [
            answers.get(("on", row["role"], v)) == answers.get(("off", row["role"], v))
            for (mode, role, v) in answers
            if mode == "on" and role == row["role"] and ("off", role, v) in answers
        ]
        row["answers_match_cache_off"] = all(same) if same else None
    return rows


# ------------------------------------------------------------------ markdown and plot
def _cell(stat: Mapping[str, float] | None, digits: int) -> str:
    if not stat:
        return ""
    med, lo, hi = stat["median"], stat["min"], stat["max"]
    if stat.get("n", 1) <= 1 or lo == hi:
        return f"{med:,.{digits}f}"
    return f"{med:,.{digits}f} ({lo:,.{digits}f}-{hi:,.{digits}f})"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def model_speed_markdown(result: Mapping[str, Any]) -> str:
    """The model-speed tables of one result JSON (the file's markdown is exactly this)."""
    from rlgpt.bench.writers import provenance_lines

    config = result["config"]
    rows = result["summary"]
    lines: list[str] = [
        f"# Model speed: local:{config['model']}",
        "",
    ]
    if not result.get("complete", True):
        lines += [
            f"**Partial result: {len(result.get('calls', []))} of "
            f"{result.get('planned_calls')} calls made.**",
            "",
        ]
    lines += [
        f"Started {result['created']}"
        + (f", {result['wall_time'] / 60:.0f} minutes" if result.get("wall_time") else "")
        + ". Real prompts of each role (Crafter manual and skill "
        "API, the nodes' JSON schema or code grammar); each call's last user message differs "
        "from the role's previous call, and the roles take turns (planner, coder, critic, "
        "planner, ...), so the cache must hold a prefix per role. Every round starts a fresh "
        f"server: its first call of each role is cold. {config['rounds']} rounds x "
        f"(1 cold + {config['repeats']} repeated) calls per role and cache setting; answers "
        f"up to {config['max_tokens']} tokens at temperature {config['temperature']}. Cells: "
        "median (min-max). Cache on = "
        f"{config['cache_slots']} saved prefixes; off = `prefix_slots=0`, which still reuses "
        "the prompt left in the model's context by the call before (another role's, here).",
        "",
        "## Call time",
        "",
        "| role | cold, cache off (s) | repeated, cache off (s) | repeated/cold | "
        "cold, cache on (s) | repeated, cache on (s) | repeated/cold |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_key = {(r["role"], r["cache"]): r for r in rows}
    for role in ROLES:
        off, on = by_key.get((role, "off"), {}), by_key.get((role, "on"), {})
        cells = []
        for row in (off, on):
            cells += [
                _cell(row.get("cold", {}).get("call_seconds"), 1),
                _cell(row.get("repeated", {}).get("call_seconds"), 1),
                _ratio(row.get("ratio_call_seconds")),
            ]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Per call",
        "",
        "| role | cache | call | " + " | ".join(title for _, title in METRICS) + " |",
        "| --- | --- | --- |" + " ---: |" * len(METRICS),
    ]
    for row in rows:
        for kind in ("cold", "repeated"):
            stats = row.get(kind)
            if not stats:
                continue
            cells = [
                _cell(stats[key], 0 if key.endswith("tokens") else (2 if "seconds" in key else 1))
                for key, _ in METRICS
            ]
            lines.append(f"| {row['role']} | {row['cache']} | {kind} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Prompt tok/s counts the prompt tokens evaluated (prompt minus cached); a cached "
        "call's prompt time includes restoring the saved prefix. Prompt-time ratio "
        "repeated/cold: "
        + ", ".join(
            f"{r['role']} cache {r['cache']} {_ratio(r.get('ratio_prompt_seconds'))}" for r in rows
        )
        + ".",
    ]
    matches = [
        f"{r['role']} {'yes' if r['answers_match_cache_off'] else 'no'}"
        for r in rows
        if r["cache"] == "on" and r.get("answers_match_cache_off") is not None
    ]
    if matches:
        lines.append(f"Answers identical with and without the cache: {', '.join(matches)}.")
    starts = [s["start_seconds"] for s in result.get("servers", [])]
    if starts:
        lines.append(
            f"Server start (model load): median {statistics.median(starts):.1f} s over "
            f"{len(starts)} starts."
        )
    loads = [s["load_average"][0] for s in result.get("servers", []) if s.get("load_average")]
    if loads:
        lines.append(
            f"1-minute load average at the rounds' starts: {min(loads):.1f} to {max(loads):.1f} "
            f"on {result['machine'].get('cpu_count')} cores."
        )
    lines += ["", "## Prompts", ""]
    for role, probes in result.get("probes", {}).items():
        labels = ", ".join(f"{p['label']} (`{p['messages_sha256']}`)" for p in probes)
        lines.append(f"- {role}: {labels}")
    lines += ["", "## Provenance", "", *provenance_lines(result), ""]
    return "\n".join(lines)


def model_speed_plot(result: Mapping[str, Any], path: Path) -> Path:
    """Bars of the median call time per role (prompt and generation stacked), cold and
    repeated, with the cache off and on; whiskers span the call-time range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = {(r["role"], r["cache"]): r for r in result["summary"]}
    series = [("off", "cold"), ("off", "repeated"), ("on", "cold"), ("on", "repeated")]
    colors = {"cold": "#8C8C8C", "repeated": "#4C72B0"}
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(ROLES))
    width = 0.2
    for i, (mode, kind) in enumerate(series):
        prompt: list[float] = []
        gen: list[float] = []
        lo: list[float] = []
        hi: list[float] = []
        for role in ROLES:
            stats = rows.get((role, mode), {}).get(kind)
            if not stats:
                for values in (prompt, gen, lo, hi):
                    values.append(0.0)
                continue
            call = stats["call_seconds"]
            prompt.append(stats["prompt_seconds"]["median"])
            gen.append(stats["generate_seconds"]["median"])
            lo.append(max(0.0, call["median"] - call["min"]))
            hi.append(max(0.0, call["max"] - call["median"]))
        pos = x + (i - 1.5) * width
        hatch = "" if mode == "on" else "//"
        ax.bar(pos, prompt, width, color=colors[kind], hatch=hatch, edgecolor="white",
               label=f"{kind}, cache {mode}: prompt")  # fmt: skip
        ax.bar(pos, gen, width, bottom=prompt, color=colors[kind], alpha=0.45, hatch=hatch,
               edgecolor="white", label=f"{kind}, cache {mode}: generation")  # fmt: skip
        tops = [p + g for p, g in zip(prompt, gen, strict=True)]
        ax.errorbar(pos, tops, yerr=[lo, hi], fmt="none", ecolor="black", capsize=2, lw=0.8)
    ax.set_xticks(x, list(ROLES))
    ax.set_ylabel("seconds per call (median)")
    ax.set_title(f"local:{result['config']['model']}: prompt + generation time per call")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_model_speed(result: Mapping[str, Any], out: Path, tag: str) -> dict[str, Path]:
    """Write the JSON, its markdown and the plot; returns their paths by kind."""
    from rlgpt.bench import writers

    paths = {"json": writers.write_json(out / f"model_speed_{tag}.json", result)}
    md = out / f"model_speed_{tag}.md"
    writers.atomic_write_text(md, model_speed_markdown(result))
    paths["markdown"] = md
    paths["png"] = model_speed_plot(result, out / f"model_speed_{tag}.png")
    return paths
