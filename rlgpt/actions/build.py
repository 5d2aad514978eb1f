"""The one way an options env is built: the env plugin's env, a sub-task reward, library actions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from rlgpt.actions.library import ActionLibrary
from rlgpt.actions.options import OptionsEnv
from rlgpt.actions.sandbox import SandboxLimits
from rlgpt.actions.subtask import PredicateTask
from rlgpt.envs.base import EnvAdapter, EnvSettings, Predicate, TaskSpec, load_adapter


def make_options_env(
    adapter: EnvAdapter | str,
    task: TaskSpec,
    settings: EnvSettings,
    *,
    subtask: Predicate | None = None,
    library: ActionLibrary | str | Path | None = None,
    action_names: Sequence[str] = (),
    prelude: Sequence[str] = (),
    limits: SandboxLimits | None = None,
) -> OptionsEnv:
    """The env plugin's env of `task`, as primitives plus library actions.

    With `subtask`, the env's own reward is replaced by the sub-task's: +1 and the end of
    the episode when the predicate first holds, plus `settings.shaping`.
    """
    plugin = load_adapter(adapter) if isinstance(adapter, str) else adapter
    if subtask is None:
        env = plugin.make_env(task, settings)
    else:
        inner = plugin.make_env(task, replace(settings, terminate_on_success=False, shaping=()))
        env = PredicateTask(inner, subtask, shaping=settings.shaping)
    return OptionsEnv(env, library, action_names, adapter=plugin, limits=limits, prelude=prelude)


@dataclass
class OptionsEnvFactory:
    """A picklable `make_options_env` call, for env workers that build their own env."""

    adapter: str = field(metadata={"description": "Env plugin name."})
    task: TaskSpec = field(metadata={"description": "The task the env is built for."})
    settings: EnvSettings = field(
        default_factory=EnvSettings, metadata={"description": "How the env is built."}
    )
    library_dir: str | None = field(default=None, metadata={"description": "Library root."})
    action_names: list[str] = field(
        default_factory=list, metadata={"description": "Library actions after the primitives."}
    )
    limits: SandboxLimits = field(
        default_factory=SandboxLimits, metadata={"description": "Sandbox limits of code calls."}
    )

    def __call__(self) -> OptionsEnv:
        """Build the env (in the worker)."""
        return make_options_env(
            self.adapter,
            self.task,
            self.settings,
            library=self.library_dir,
            action_names=self.action_names,
            limits=self.limits,
        )
