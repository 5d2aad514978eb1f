"""A SubprocVecEnv whose env workers (where code actions run) are replaced when they die."""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env.base_vec_env import CloudpickleWrapper, VecEnv
from stable_baselines3.common.vec_env.subproc_vec_env import SubprocVecEnv, _stack_obs, _worker

from rlgpt.actions.sandbox import SandboxLimits, worker_death_error
from rlgpt.actions.sandbox.black_box import BlackBox
from rlgpt.actions.worker import adopt_report, read_report
from rlgpt.logging import get_logger

log = get_logger("rlgpt.sandbox_vec")


def _supervised_worker(
    remote: Connection,
    parent_remote: Connection,
    env_fn_wrapper: CloudpickleWrapper,
    report: Connection,
    last_call: str,
) -> None:
    adopt_report(report, last_call)
    _worker(remote, parent_remote, env_fn_wrapper)


class SupervisedSubprocVecEnv(SubprocVecEnv):
    """SB3's SubprocVecEnv whose workers are replaced when they die.

    A worker that ends while stepping (the sandbox's hard CPU stop, a segfault, the OOM
    killer) is joined, replaced by a new worker built by the same factory, and reset; the
    step returns that new episode's first observation with `done=True` and
    `info["code_action_error"]` (kind, message, line and action read from the worker's
    report) plus `info["worker_replaced"] = True`. Training goes on.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        start_method: str = "forkserver",
        limits: SandboxLimits | None = None,
        max_restarts_in_a_row: int = 3,
    ) -> None:
        """Start one supervised worker per env factory.

        Args:
            env_fns: Picklable env constructors.
            start_method: multiprocessing start method (forkserver keeps workers clean).
            limits: The sandbox limits (for error messages).
            max_restarts_in_a_row: Replacements of one worker without a successful reset
                before giving up (a prelude that always kills its worker).
        """
        self.waiting = False
        self.closed = False
        self.limits = limits or SandboxLimits()
        self.max_restarts_in_a_row = max_restarts_in_a_row
        self.replaced: list[dict[str, Any]] = []
        self._ctx = mp.get_context(start_method)
        self._env_fns = list(env_fns)
        n = len(self._env_fns)
        self.remotes: list[Connection] = []
        self.processes: list[Any] = []
        self._reports: list[Connection] = []
        self._dead = [False] * n
        self._boxes = [BlackBox() for _ in range(n)]
        for index in range(n):
            remote, process, reader = self._spawn(index)
            self.remotes.append(remote)
            self.processes.append(process)
            self._reports.append(reader)
        self.remotes[0].send(("get_spaces", None))
        observation_space, action_space = self.remotes[0].recv()
        VecEnv.__init__(self, n, observation_space, action_space)

    def _spawn(self, index: int) -> tuple[Connection, Any, Connection]:
        remote, work_remote = self._ctx.Pipe()
        reader, writer = self._ctx.Pipe(duplex=False)
        box = self._boxes[index]
        args = (work_remote, remote, CloudpickleWrapper(self._env_fns[index]), writer, box.path)
        process = self._ctx.Process(target=_supervised_worker, args=args, daemon=True)  # type: ignore[attr-defined]
        process.start()
        work_remote.close()
        writer.close()
        return remote, process, reader

    def _replace(self, index: int) -> tuple[dict[str, Any], Any, dict[str, Any]]:
        """Join the dead worker, start a new one and reset it; returns (error, obs, info)."""
        errors: list[dict[str, Any]] = []
        for _attempt in range(self.max_restarts_in_a_row):
            process = self.processes[index]
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            report = read_report(self._reports[index])
            box = self._boxes[index]
            error = worker_death_error(report, process.exitcode, self.limits, box.read())
            box.clear()
            errors.append(error)
            self.replaced.append({"env": index, "pid": process.pid, **error})
            log.warning("env_worker_replaced", env=index, pid=process.pid, **error)
            self.remotes[index].close()
            self._reports[index].close()
            remote, process, reader = self._spawn(index)
            self.remotes[index], self.processes[index], self._reports[index] = (
                remote,
                process,
                reader,
            )
            try:
                remote.send(("reset", (None, None)))
                obs, reset_info = remote.recv()
            except (EOFError, ConnectionResetError, BrokenPipeError):
                continue
            self._dead[index] = False
            return errors[0], obs, reset_info
        raise RuntimeError(
            f"env worker {index} died {len(errors)} times in a row; last error: {errors[-1]}"
        )

    def step_async(self, actions: np.ndarray) -> None:
        """Send actions; a worker found dead here is replaced in `step_wait`."""
        for index, (remote, action) in enumerate(zip(self.remotes, actions, strict=True)):
            try:
                remote.send(("step", action))
            except (BrokenPipeError, ConnectionResetError, OSError):
                self._dead[index] = True
        self.waiting = True

    def step_wait(self) -> Any:
        """Collect results; a dead worker's env ends its episode with a structured error."""
        results: list[tuple[Any, ...]] = []
        for index, remote in enumerate(self.remotes):
            result: tuple[Any, ...] | None = None
            if not self._dead[index]:
                try:
                    result = remote.recv()
                except (EOFError, ConnectionResetError, OSError):
                    result = None
            if result is None:
                error, obs, reset_info = self._replace(index)
                info = {
                    "code_action_error": error,
                    "worker_replaced": True,
                    "option_success": False,
                    "env_steps": 0,
                    "terminal_observation": obs,
                    "TimeLimit.truncated": True,
                }
                result = (obs, np.float32(0.0), True, info, reset_info)
            results.append(result)
        self.waiting = False
        obs, rews, dones, infos, self.reset_infos = zip(*results, strict=True)  # type: ignore[assignment]
        return _stack_obs(obs, self.observation_space), np.stack(rews), np.stack(dones), infos

    def reset(self) -> Any:
        """Reset every worker; one that dies while resetting (a prelude code action) is replaced."""
        results: list[tuple[Any, dict[str, Any]]] = []
        for index, remote in enumerate(self.remotes):
            try:
                remote.send(("reset", (self._seeds[index], self._options[index])))
                results.append(remote.recv())
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                error, obs, reset_info = self._replace(index)
                results.append((obs, {**reset_info, "code_action_error": error}))
        obs, self.reset_infos = zip(*results, strict=True)  # type: ignore[assignment]
        self._reset_seeds()
        self._reset_options()
        return _stack_obs(obs, self.observation_space)

    def close(self) -> None:
        """Close every worker, tolerating dead ones."""
        if self.closed:
            return
        for index, remote in enumerate(self.remotes):
            try:
                if self.waiting and not self._dead[index]:
                    remote.recv()
                remote.send(("close", None))
            except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
                pass
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
        for remote in self.remotes:
            remote.close()
        for reader in self._reports:
            reader.close()
        for box in self._boxes:
            box.close()
        self.closed = True


__all__ = ["SupervisedSubprocVecEnv"]
