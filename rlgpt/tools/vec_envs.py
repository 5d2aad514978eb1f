"""The vectorized envs of plain-PPO training (envs without library actions).

Envs with library actions use the supervised workers of `rlgpt.actions.vec_workers` instead:
generated code never runs in the training process.

Plain PPO keeps its envs close to the learner: `FastDummyVecEnv` steps them all in the
training process; `ShardedVecEnv` steps a shard of them in a helper process at the same
time as the rest here, so that env stepping uses a second core. Both give the same
observations, rewards and episodes as stepping every env in turn: each env only ever sees
its own seed and its own actions.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import (
    CloudpickleWrapper,
    VecEnv,
    VecEnvIndices,
    VecEnvObs,
    VecEnvStepReturn,
)

from rlgpt.logging import get_logger

log = get_logger("rlgpt.vec_envs")


class FastDummyVecEnv(DummyVecEnv):
    """DummyVecEnv without the deep copy of every step's infos.

    SB3 deep-copies the info dicts each step (about a third of the cost of an env step
    here); the envs of this pipeline build fresh info dicts every step, so handing them over
    as they are is safe.
    """

    def step_wait(self) -> VecEnvStepReturn:
        """Step every env, auto-resetting finished ones as DummyVecEnv does."""
        for i in range(self.num_envs):
            obs, reward, terminated, truncated, info = self.envs[i].step(self.actions[i])
            self.buf_rews[i] = reward
            self.buf_dones[i] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[i]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[i] = self.envs[i].reset()
            self._save_obs(i, obs)
            self.buf_infos[i] = info
        return (
            self._obs_from_buf(),
            np.copy(self.buf_rews),
            np.copy(self.buf_dones),
            list(self.buf_infos),
        )


class TimedVecEnv(VecEnvWrapper):
    """Passes everything through to `venv` and adds up the wall time of its steps (`seconds`;
    the resets of finished episodes happen inside them), for the job's time split
    (`PhaseTimer`)."""

    def __init__(self, venv: VecEnv) -> None:
        super().__init__(venv)
        self.seconds = 0.0

    def reset(self) -> VecEnvObs:
        """Reset the wrapped envs (before learn() starts: not counted)."""
        return self.venv.reset()

    def step_async(self, actions: np.ndarray) -> None:
        """Send the actions (timed)."""
        started = time.perf_counter()
        try:
            self.venv.step_async(actions)
        finally:
            self.seconds += time.perf_counter() - started

    def step_wait(self) -> VecEnvStepReturn:
        """Wait for the step (timed)."""
        started = time.perf_counter()
        try:
            return self.venv.step_wait()
        finally:
            self.seconds += time.perf_counter() - started


def local_share(n_envs: int) -> int:
    """How many of `n_envs` a `ShardedVecEnv` steps in the training process.

    The training process also runs the policy's forward pass and SB3's bookkeeping for every
    env, so it takes the smaller part (3 of 8; used for pixels, where it measured faster).
    """
    return max(1, (3 * n_envs) // 8)


def _shard_worker(remote: Connection, env_fns: CloudpickleWrapper) -> None:
    """Helper loop: step a `FastDummyVecEnv` of the shard's envs on command."""
    venv: FastDummyVecEnv | None = None
    try:
        venv = FastDummyVecEnv(env_fns.var)
        remote.send(("ok", None))
        while True:
            command, data = remote.recv()
            if command == "close":
                break
            try:
                remote.send(("ok", _serve(venv, command, data)))
            except Exception:  # reported to the training process, which raises it
                remote.send(("error", traceback.format_exc()))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):
        pass  # the training process went away
    except Exception:  # building the envs failed: reported, then raised there
        remote.send(("error", traceback.format_exc()))
    finally:
        if venv is not None:
            venv.close()
        remote.close()


def _serve(venv: FastDummyVecEnv, command: str, data: Any) -> Any:
    if command == "step":
        venv.step_async(data)
        obs, rews, dones, infos = venv.step_wait()
        # Only a finished episode's env has a new reset info (pickling them all costs more
        # than the observations).
        fresh = {int(i): venv.reset_infos[i] for i in np.flatnonzero(dones)}
        return obs, rews, dones, infos, fresh
    if command == "reset":
        seeds, options = data
        for i, seed in enumerate(seeds):
            venv._seeds[i] = seed
        for i, option in enumerate(options):
            venv._options[i] = option
        obs = venv.reset()
        return obs, list(venv.reset_infos)
    if command == "get_attr":
        return venv.get_attr(*data)
    if command == "set_attr":
        return venv.set_attr(*data)
    if command == "env_method":
        name, args, kwargs, indices = data
        return venv.env_method(name, *args, indices=indices, **kwargs)
    if command == "env_is_wrapped":
        return venv.env_is_wrapped(*data)
    raise ValueError(f"unknown command {command!r}")


class ShardedVecEnv(VecEnv):
    """Envs stepped on two cores: a shard in a helper process, the rest here, concurrently.

    `step_async` hands the helper its actions first, then this process steps its own envs,
    and `step_wait` joins the two halves in env order. The helper holds its envs for the
    whole run; an error in it is raised here with its traceback.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        local_envs: int,
        start_method: str = "forkserver",
    ) -> None:
        """Build `local_envs` envs here and the others in one helper process.

        Args:
            env_fns: Picklable env constructors, in env order.
            local_envs: How many of the first envs step in this process (at least 1, and
                fewer than all, so that the helper has a shard).
            start_method: multiprocessing start method (forkserver: a clean helper, with no
                torch threads or locks inherited from here).
        """
        if not 1 <= local_envs < len(env_fns):
            raise ValueError(f"local_envs must be in 1..{len(env_fns) - 1}, not {local_envs}")
        self.local = FastDummyVecEnv(list(env_fns[:local_envs]))
        self._n_local = local_envs
        ctx = mp.get_context(start_method)
        self._remote, work_remote = ctx.Pipe()
        # Not a daemon: the helper may start a world-prefetch process of its own.
        self._process = ctx.Process(  # type: ignore[attr-defined]
            target=_shard_worker,
            args=(work_remote, CloudpickleWrapper(list(env_fns[local_envs:]))),
            name="rlgpt-env-shard",
        )
        self._process.start()
        work_remote.close()
        self.closed = False
        self._stepping = False
        self._answer()  # the helper's envs are built
        super().__init__(len(env_fns), self.local.observation_space, self.local.action_space)

    # ------------------------------------------------------------------ helper
    def _answer(self) -> Any:
        try:
            status, payload = self._remote.recv()
        except (EOFError, OSError) as exc:
            code = self._process.exitcode
            raise RuntimeError(f"the env shard process died (exit code {code})") from exc
        if status == "error":
            raise RuntimeError(f"the env shard process failed:\n{payload}")
        return payload

    def _send(self, command: str, data: Any) -> None:
        try:
            self._remote.send((command, data))
        except OSError as exc:  # BrokenPipeError: the helper is gone
            code = self._process.exitcode
            raise RuntimeError(f"the env shard process died (exit code {code})") from exc

    def _ask(self, command: str, data: Any) -> Any:
        self._send(command, data)
        return self._answer()

    def _split(self, indices: VecEnvIndices) -> tuple[list[int], list[int]]:
        """Env indices as (local indices, helper indices)."""
        chosen = self._get_indices(indices)
        local = [i for i in chosen if i < self._n_local]
        remote = [i - self._n_local for i in chosen if i >= self._n_local]
        return local, remote

    # ----------------------------------------------------------------- VecEnv
    def reset(self) -> VecEnvObs:
        """Reset every env with the seeds and options set since the last reset."""
        n = self._n_local
        self._send("reset", (self._seeds[n:], self._options[n:]))
        for i in range(n):
            self.local._seeds[i] = self._seeds[i]
            self.local._options[i] = self._options[i]
        local_obs = self.local.reset()
        remote_obs, remote_infos = self._answer()
        self.reset_infos = list(self.local.reset_infos) + list(remote_infos)
        self._reset_seeds()
        self._reset_options()
        return _concat_obs(local_obs, remote_obs)

    def step_async(self, actions: np.ndarray) -> None:
        """Start the helper's envs, then step this process's envs (in `step_wait`)."""
        self._send("step", actions[self._n_local :])
        self._stepping = True
        self.local.step_async(actions[: self._n_local])

    def step_wait(self) -> VecEnvStepReturn:
        """Step the local envs while the helper steps its own, then join the results."""
        obs, rews, dones, infos = self.local.step_wait()
        self._stepping = False
        r_obs, r_rews, r_dones, r_infos, fresh = self._answer()
        for i, info in enumerate(self.local.reset_infos):
            self.reset_infos[i] = info
        for i, info in fresh.items():
            self.reset_infos[self._n_local + i] = info
        return (
            _concat_obs(obs, r_obs),
            np.concatenate([rews, r_rews]),
            np.concatenate([dones, r_dones]),
            list(infos) + list(r_infos),
        )

    def close(self) -> None:
        """Stop the helper (its envs close there) and close the local envs."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._stepping:
                self._answer()
            self._remote.send(("close", None))
        except (BrokenPipeError, EOFError, OSError, RuntimeError):
            pass  # already gone
        self._process.join(timeout=10)
        if self._process.is_alive():
            log.warning("env_shard_kill", pid=self._process.pid)
            self._process.kill()
            self._process.join()
        self._remote.close()
        self.local.close()

    def get_images(self) -> Sequence[np.ndarray | None]:
        """Rendered frames of every env, in env order."""
        return self.env_method("render")

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """An attribute of the chosen envs, in env order."""
        local, remote = self._split(indices)
        values = self.local.get_attr(attr_name, local) if local else []
        if remote:
            values += self._ask("get_attr", (attr_name, remote))
        return values

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute of the chosen envs."""
        local, remote = self._split(indices)
        if local:
            self.local.set_attr(attr_name, value, local)
        if remote:
            self._ask("set_attr", (attr_name, value, remote))

    def env_method(
        self,
        method_name: str,
        *method_args: Any,
        indices: VecEnvIndices = None,
        **method_kwargs: Any,
    ) -> list[Any]:
        """Call a method of the chosen envs, in env order."""
        local, remote = self._split(indices)
        values: list[Any] = []
        if remote:  # the helper works while the local envs answer
            self._send("env_method", (method_name, method_args, method_kwargs, remote))
        if local:
            values = self.local.env_method(
                method_name, *method_args, indices=local, **method_kwargs
            )
        if remote:
            values += self._answer()
        return values

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """Whether the chosen envs are wrapped by `wrapper_class`, in env order."""
        local, remote = self._split(indices)
        values = self.local.env_is_wrapped(wrapper_class, local) if local else []
        if remote:
            values += self._ask("env_is_wrapped", (wrapper_class, remote))
        return values


def _concat_obs(first: Any, second: Any) -> VecEnvObs:
    if isinstance(first, dict):
        return {key: np.concatenate([first[key], second[key]]) for key in first}
    return np.concatenate([first, second])
