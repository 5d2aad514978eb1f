"""Library code actions as options: loaded once per process, called in the sandbox."""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rlgpt.actions.library import ActionLibrary, LibraryEntry, LibraryError
from rlgpt.actions.option_result import OptionResult
from rlgpt.actions.sandbox import (
    BREACH_KINDS,
    CodeAction,
    CodeActionRejected,
    SandboxLimits,
    check_available,
    enter_worker_mode,
    load_code_action,
    run_code_action,
)
from rlgpt.envs.base import EnvAdapter

# Code actions are loaded once per process (env workers reuse them across episodes).
_CODE_CACHE: dict[tuple[str, int, float], CodeAction | CodeActionRejected] = {}


class _NoStep:
    """Step callback for `available(api)`: perception only, any env step is refused."""

    def __call__(self, action: int) -> Any:
        raise RuntimeError("available(api) may not step the environment")


class CodeOptionsMixin:
    """The code-action part of `OptionsEnv`: loading, worker limits, calls and availability."""

    # Set by OptionsEnv.__init__ and its step accounting.
    adapter: EnvAdapter
    library: ActionLibrary | None
    limits: SandboxLimits
    _skill_names: list[str] | None
    _loaded: dict[str, tuple[LibraryEntry, CodeAction | CodeActionRejected]]
    _limits_by_budget: dict[int, SandboxLimits]
    _worker_checked: bool
    _steps_acc: int
    _reward_acc: float
    _truncated: bool

    if TYPE_CHECKING:

        @property
        def episode_over(self) -> bool: ...

        def _entry(self, name: str) -> LibraryEntry: ...

        def _api_env(self) -> Any: ...

        def _budgeted_step(self, budget: int) -> tuple[Callable[[int], Any], Callable[[], int]]: ...

    @property
    def skill_names(self) -> list[str]:
        """Skill-API names code actions may call."""
        if self._skill_names is None:
            self._skill_names = [spec.name for spec in self.adapter.skill_specs()]
        return self._skill_names

    def _code_action(self, entry: LibraryEntry) -> CodeAction | CodeActionRejected:
        # Entries are fixed for the env's life: resolve the file once, not on every call.
        loaded = self._loaded.get(entry.name)
        if loaded is not None and loaded[0] is entry:
            return loaded[1]
        if self.library is None:
            raise LibraryError("no library")
        path = self.library.root / entry.path
        key = (str(path.resolve()), entry.version, path.stat().st_mtime)
        if key not in _CODE_CACHE:
            try:
                _CODE_CACHE[key] = load_code_action(
                    entry.name, path.read_text(), self.skill_names, self.limits
                )
            except CodeActionRejected as exc:
                _CODE_CACHE[key] = exc
        self._loaded[entry.name] = (entry, _CODE_CACHE[key])
        return _CODE_CACHE[key]

    def _ensure_worker_limits(self) -> None:
        """In an env worker process, apply the sandbox's rlimits before code first runs.

        Measured here, after the env (and torch) are loaded, so the memory headroom sits
        above the worker's real baseline. The user's main process is never limited.
        """
        if self._worker_checked:
            return
        self._worker_checked = True
        # Signals and rlimits belong to a worker's main thread (a server's threads are not it).
        if (
            multiprocessing.parent_process() is not None
            and threading.current_thread() is threading.main_thread()
        ):
            enter_worker_mode(self.limits)

    def _call_limits(self, budget: int) -> SandboxLimits:
        limits = self._limits_by_budget.get(budget)
        if limits is None:
            limits = replace(self.limits, max_steps=budget)
            self._limits_by_budget[budget] = limits
        return limits

    def _run_code(self, entry: LibraryEntry, budget: int) -> OptionResult:
        loaded = self._code_action(entry)
        if isinstance(loaded, CodeActionRejected):
            error = {**loaded.as_dict(), "action": entry.name}
            return OptionResult(entry.name, False, 0, 0.0, [error])
        return self.run_code(loaded, max(1, min(budget, entry.max_steps, self.limits.max_steps)))

    def run_code(self, loaded: CodeAction, budget: int) -> OptionResult:
        """Run one call of a loaded code action from the current state with a step budget."""
        if not self._worker_checked:
            self._ensure_worker_limits()
        start_steps, start_reward = self._steps_acc, self._reward_acc
        step, used = self._budgeted_step(budget)
        api = self.adapter.make_skill_api(self._api_env(), step, budget)
        outcome = run_code_action(loaded, api, self._call_limits(budget), used)
        if (
            outcome.error is not None
            and outcome.error["kind"] in BREACH_KINDS
            and self.limits.end_episode_on_breach
        ):
            # Cut at an arbitrary point (maybe inside an env step): end the episode as failed.
            self._truncated = True
            outcome.error["episode_ended"] = True
        return OptionResult(
            name=loaded.name,
            success=outcome.success,
            env_steps=self._steps_acc - start_steps,
            reward=self._reward_acc - start_reward,
            errors=[outcome.error] if outcome.error else [],
            interrupted=outcome.interrupted,
            trace=outcome.trace,
        )

    def _is_available(self, name: str) -> bool:
        entry = self._entry(name)
        if entry.kind != "code":
            return True
        loaded = self._code_action(entry)
        if isinstance(loaded, CodeActionRejected):
            return False
        if loaded.available is None:
            return True
        if self.episode_over:
            return False
        self._ensure_worker_limits()
        api = self.adapter.make_skill_api(self._api_env(), _NoStep(), 1)
        return check_available(loaded, api, self.limits)
