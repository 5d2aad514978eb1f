"""Importing this module loads the compiled Crafter kernels into the process.

Env workers fork from a preloaded forkserver (`rlgpt.actions.worker.WORKER_PRELOAD`): with
this module in the preload list they start with the kernels in memory instead of each
loading numba's cache on its first reset (about a second of CPU per worker).
"""

from rlgpt.envs.crafter.compiled_env import warm_up

warm_up()
