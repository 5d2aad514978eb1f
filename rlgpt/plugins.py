"""Plugin discovery through entry points, plus in-process registration (tests, notebooks)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

GROUPS = ("rlgpt.nodes", "rlgpt.envs", "rlgpt.llms")


class PluginNotFoundError(LookupError):
    """No plugin of that name in the group; the message lists what is installed."""


@dataclass
class PluginRegistry:
    """The plugins of one entry-point group; `register` adds or overrides one in this process."""

    group: str
    _local: dict[str, Any] = field(default_factory=dict)
    _cache: dict[str, Any] = field(default_factory=dict)

    def names(self) -> list[str]:
        """Every installed or registered plugin name."""
        found = {ep.name for ep in entry_points(group=self.group)}
        return sorted(found | set(self._local))

    def register(self, name: str, plugin: Any) -> None:
        """Make `plugin` available under `name` (overrides an entry point of the same name)."""
        self._local[name] = plugin
        self._cache.pop(name, None)

    def unregister(self, name: str) -> None:
        """Remove an in-process registration."""
        self._local.pop(name, None)
        self._cache.pop(name, None)

    def load(self, name: str) -> Any:
        """The plugin object (class or factory) registered under `name`."""
        if name in self._local:
            return self._local[name]
        if name in self._cache:
            return self._cache[name]
        for ep in entry_points(group=self.group):
            if ep.name == name:
                self._cache[name] = ep.load()
                return self._cache[name]
        raise PluginNotFoundError(
            f"no plugin {name!r} in {self.group}; installed: {', '.join(self.names()) or 'none'}"
        )

    def describe(self) -> dict[str, str]:
        """Plugin name -> where it comes from (module path or 'registered in process')."""
        out = {ep.name: ep.value for ep in entry_points(group=self.group)}
        out.update({name: "registered in process" for name in self._local})
        return dict(sorted(out.items()))


nodes = PluginRegistry("rlgpt.nodes")
envs = PluginRegistry("rlgpt.envs")
llms = PluginRegistry("rlgpt.llms")
