"""The in-process vectorized env of plain-PPO training (envs without library actions).

Envs with library actions use the supervised workers of `rlgpt.actions.vec_workers` instead:
generated code never runs in the training process.
"""

from __future__ import annotations

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn


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
