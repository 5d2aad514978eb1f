"""The node-plugin protocol and lookup by (role, name)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from langgraph.runtime import Runtime

from rlgpt import plugins
from rlgpt.graph.context import Context
from rlgpt.graph.state import State

Role = Literal["planner", "coder", "rl_trainer", "critic", "final_policy"]
ROLES: tuple[Role, ...] = ("planner", "coder", "rl_trainer", "critic", "final_policy")


@runtime_checkable
class NodePlugin(Protocol):
    """A graph node implementation: called with the state and the run-time context.

    Plugins are registered in the `rlgpt.nodes` entry-point group as `<role>:<name>`
    and chosen per run by the context field named after the role.
    """

    role: ClassVar[Role]
    name: ClassVar[str]

    def __call__(self, state: State, runtime: Runtime[Context]) -> dict[str, Any]: ...


def node_plugin(role: Role, name: str) -> NodePlugin:
    """Instantiate the node plugin `<role>:<name>`."""
    factory = plugins.nodes.load(f"{role}:{name}")
    plugin = factory()
    if not isinstance(plugin, NodePlugin) or plugin.role != role:
        raise TypeError(f"plugin {role}:{name} is not a {role} node plugin")
    return plugin


def register_node(plugin_cls: type[Any]) -> None:
    """Register a node plugin class in this process (its `role` and `name` give the key)."""
    plugins.nodes.register(f"{plugin_cls.role}:{plugin_cls.name}", plugin_cls)
