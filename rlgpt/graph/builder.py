"""Graph wiring: start, planner, review_plan, coder, rl_trainer, critic (loops), final_policy,
report."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime, get_runtime

from rlgpt.cancel import STOP_EVENT
from rlgpt.envs.base import load_adapter
from rlgpt.graph import preflight
from rlgpt.graph.context import Context, context_of
from rlgpt.graph.node_plugins import ROLES, Role, node_plugin
from rlgpt.graph.review import review_plan
from rlgpt.graph.state import InputState, OutputState, State, open_ended
from rlgpt.logging import get_logger
from rlgpt.report import write_report

log = get_logger("graph")


def start(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Check what the chosen plugins need (a clear error before anything is written), resolve
    the task once (an unknown one is a clear error listing the valid ones) and give the run
    its id and directory (kept on loops and resumes)."""
    ctx = context_of(runtime)
    preflight.check(ctx)
    update: dict[str, Any] = {
        "task_spec": load_adapter(ctx.env).task(state["task"]).model_dump(mode="json")
    }
    if not state.get("run_dir"):
        info = runtime.execution_info
        run_id = (info.thread_id if info and info.thread_id else None) or uuid.uuid4().hex[:12]
        run_dir = Path(ctx.runs_dir) / run_id
        (run_dir / "library").mkdir(parents=True, exist_ok=True)
        log.info("run_started", run_id=run_id, task=state["task"], run_dir=str(run_dir))
        update.update(run_id=run_id, run_dir=str(run_dir), inner_loops=0, outer_loops=0)
    return update


#: Seconds a stopped node step may take to wind down (save its policy, close env workers).
STOP_GRACE_SECONDS = 120.0


def _dispatch(role: Role) -> RunnableLambda[State, dict[str, Any]]:
    """A node that runs the plugin the run's context chooses for `role`.

    The plugin is sync. Each step gets a stop signal (`rlgpt.cancel`) that is set
    when the step runs past `node_timeout` or, in async runs (the graph server), when the
    run is cancelled: RL training polls it and stops, keeping the policy trained so far.
    """

    def run_plugin(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
        plugin = node_plugin(role, getattr(context_of(runtime), role))
        return plugin(state, runtime)

    def sync_node(state: State, config: RunnableConfig) -> dict[str, Any]:
        runtime: Runtime[Context] = get_runtime()
        timeout = context_of(runtime).node_timeout
        stop = threading.Event()
        token = STOP_EVENT.set(stop)
        timer = threading.Timer(timeout, stop.set) if timeout > 0 else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            return run_plugin(state, runtime)
        finally:
            if timer is not None:
                timer.cancel()
            STOP_EVENT.reset(token)

    async def async_node(state: State, config: RunnableConfig) -> dict[str, Any]:
        runtime: Runtime[Context] = get_runtime()
        timeout = context_of(runtime).node_timeout or None
        stop = threading.Event()
        token = STOP_EVENT.set(stop)
        try:
            # The task copies this context, so the worker thread sees `stop`.
            work = asyncio.ensure_future(asyncio.to_thread(run_plugin, state, runtime))
        finally:
            STOP_EVENT.reset(token)
        try:
            return await asyncio.wait_for(asyncio.shield(work), timeout)
        except TimeoutError:
            log.warning("node_timeout", node=role, seconds=timeout)
            stop.set()
            return await asyncio.wait_for(work, STOP_GRACE_SECONDS)
        except asyncio.CancelledError:
            log.info("node_cancelled", node=role)
            stop.set()
            # A cancelled thread keeps running: wait for it to wind down before the run ends.
            with contextlib.suppress(BaseException):
                await asyncio.wait({work}, timeout=STOP_GRACE_SECONDS)
            raise

    return RunnableLambda(sync_node, afunc=async_node, name=role)


def report(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Write report.md, metrics.json and the plots of the run."""
    path = write_report(dict(state), context_of(runtime).as_dict())
    return {"report_path": str(path)}


def after_critic(state: State) -> Literal["coder", "planner", "final_policy", "report"]:
    """Follow the critic's last verdict; at the end of an open-ended task, the final
    whole-game policy comes before the report."""
    verdicts = state.get("verdicts", [])
    route = verdicts[-1]["route"] if verdicts else "end"
    if route != "end":
        return route
    return "final_policy" if open_ended(state) else "report"


builder = StateGraph(
    State, context_schema=Context, input_schema=InputState, output_schema=OutputState
)
builder.add_node("start", start)
for _role in ROLES:
    builder.add_node(_role, _dispatch(_role))
builder.add_node("review_plan", review_plan, destinations=("coder", "planner"))
builder.add_node("report", report)
builder.add_edge(START, "start")
builder.add_edge("start", "planner")
builder.add_edge("planner", "review_plan")
builder.add_edge("coder", "rl_trainer")
builder.add_edge("rl_trainer", "critic")
builder.add_conditional_edges(
    "critic", after_critic, ["coder", "planner", "final_policy", "report"]
)
builder.add_edge("final_policy", "report")
builder.add_edge("report", END)

graph = builder.compile()
graph.name = "rlgpt"
