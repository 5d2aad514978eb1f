"""The speed peer: PPO on Craftax-Classic (JAX), jitted end to end, timed apart from compiling.

This is the benchmark's own JAX code (needs the `peer` extra), written for `rlgpt bench peer`
after PureJaxRL's published structure: vmapped envs, and rollout, advantages and the PPO
epochs of many updates inside one jitted `lax.scan`. It uses rlgpt's PPO settings (SB3's
actor and critic MLPs, rollouts of `n_steps` per env, minibatches of an eighth of the
rollout, 4 epochs, learning rate 3e-4, entropy 0.01) so only the implementation differs.
Craftax-Classic re-implements Crafter with rules that differ in places; it is a yardstick for
speed, never for scores.

Run as a module it prints one JSON measurement: `python -m rlgpt.bench.peer_jax --envs 256`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from craftax.craftax_env import make_craftax_env_from_name
from flax import linen as nn

Resets = Literal["optimistic", "fresh"]


@dataclass(frozen=True)
class PeerConfig:
    """One peer measurement: the env count, how finished envs get a new world, and sizes."""

    envs: int = 256
    resets: Resets = "optimistic"
    n_steps: int = 256
    epochs: int = 4
    minibatches: int = 8
    width: int = 64
    updates: int = 4
    seed: int = 0

    @property
    def steps_per_update(self) -> int:
        return self.envs * self.n_steps


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


class ActorCritic(nn.Module):
    """SB3's MlpPolicy layout: separate tanh MLPs for the policy and the value."""

    actions: int
    width: int

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        init = nn.initializers.orthogonal
        pi, v = x, x
        for _ in range(2):
            pi = nn.tanh(nn.Dense(self.width, kernel_init=init(np.sqrt(2)))(pi))
            v = nn.tanh(nn.Dense(self.width, kernel_init=init(np.sqrt(2)))(v))
        logits = nn.Dense(self.actions, kernel_init=init(0.01))(pi)
        value = nn.Dense(1, kernel_init=init(1.0))(v)
        return logits, value[..., 0]


def _vector_env(config: PeerConfig) -> tuple[Any, Callable[..., Any], Callable[..., Any]]:
    """The env and its batched `reset(key)` and `step(key, state, action)`.

    `fresh`: every finished env gets a world of its own (the auto-reset env computes a reset
    for every env at every step and keeps it where the episode ended). `optimistic`: each
    step generates a few worlds (envs / min(16, envs)) and hands them to the envs that
    finished, as Craftax's own PPO does.
    """
    env = make_craftax_env_from_name(
        "Craftax-Classic-Symbolic-v1", auto_reset=config.resets == "fresh"
    )
    params = env.default_params
    n = config.envs

    def reset(key: jax.Array) -> tuple[jax.Array, Any]:
        return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n), params)

    if config.resets == "fresh":

        def step(key: jax.Array, state: Any, action: jax.Array) -> tuple[Any, ...]:
            keys = jax.random.split(key, n)
            return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, state, action, params)

        return env, reset, step

    pool = max(1, n // min(16, n))

    def optimistic_step(key: jax.Array, state: Any, action: jax.Array) -> tuple[Any, ...]:
        k_step, k_reset, k_pick = jax.random.split(key, 3)
        obs, state, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_step, n), state, action, params
        )
        fresh_obs, fresh_state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_reset, pool), params
        )
        pick = jax.random.randint(k_pick, (n,), 0, pool)

        def choose(new: jax.Array, old: jax.Array) -> jax.Array:
            mask = done.reshape((n,) + (1,) * (old.ndim - 1))
            return jnp.where(mask, new[pick], old)

        state = jax.tree.map(choose, fresh_state, state)
        return choose(fresh_obs, obs), state, reward, done, info

    return env, reset, optimistic_step


def make_train(config: PeerConfig) -> tuple[Callable[[jax.Array], Any], Callable[..., Any]]:
    """`init(key)` and a jitted `train(runner)` that runs `config.updates` PPO updates."""
    env, reset, step = _vector_env(config)
    net = ActorCritic(actions=env.num_actions, width=config.width)
    optimizer = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(3e-4, eps=1e-5))
    batch = config.steps_per_update
    minibatch = batch // config.minibatches
    gamma, lam, clip, ent_coef, vf_coef = 0.99, 0.95, 0.2, 0.01, 0.5

    def forward(weights: Any, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        return cast(tuple[jax.Array, jax.Array], net.apply(weights, obs))

    def init(key: jax.Array) -> tuple[Any, ...]:
        k_net, k_env, k_run = jax.random.split(key, 3)
        obs, state = reset(k_env)
        weights = net.init(k_net, obs)
        runner = (weights, optimizer.init(weights), state, obs, k_run)
        # Strong dtypes, as `train` returns them: a weakly typed leaf would make the second
        # call compile again and be timed with its compilation.
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), runner)

    def loss_fn(weights: Any, mb: Transition, adv: jax.Array, ret: jax.Array) -> jax.Array:
        logits, value = forward(weights, mb.obs)
        log_probs = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs, mb.action[:, None], axis=1)[:, 0]
        ratio = jnp.exp(log_prob - mb.log_prob)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        policy = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - clip, 1 + clip) * adv).mean()
        entropy = -(jnp.exp(log_probs) * log_probs).sum(-1).mean()
        return policy + vf_coef * ((ret - value) ** 2).mean() - ent_coef * entropy

    def one_update(runner: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], jax.Array]:
        weights, opt_state, env_state, obs, key = runner

        def env_step(carry: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], Transition]:
            env_state, obs, key = carry
            key, k_act, k_step = jax.random.split(key, 3)
            logits, value = forward(weights, obs)
            action = jax.random.categorical(k_act, logits)
            log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), action[:, None], 1)[:, 0]
            next_obs, env_state, reward, done, _info = step(k_step, env_state, action)
            return (env_state, next_obs, key), Transition(
                obs, action, log_prob, value, reward, done
            )

        (env_state, obs, key), traj = jax.lax.scan(
            env_step, (env_state, obs, key), None, config.n_steps
        )
        last_value = forward(weights, obs)[1]

        def gae(carry: tuple[jax.Array, jax.Array], t: Transition) -> tuple[Any, jax.Array]:
            advantage, next_value = carry
            live = 1.0 - t.done
            delta = t.reward + gamma * next_value * live - t.value
            advantage = delta + gamma * lam * live * advantage
            return (advantage, t.value), advantage

        advantages = jax.lax.scan(
            gae, (jnp.zeros_like(last_value), last_value), traj, reverse=True
        )[1]
        returns = advantages + traj.value
        flat = jax.tree.map(lambda x: x.reshape((batch, *x.shape[2:])), traj)
        flat_adv, flat_ret = advantages.reshape(batch), returns.reshape(batch)

        def epoch(carry: tuple[Any, ...], _: None) -> tuple[tuple[Any, ...], jax.Array]:
            weights, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            order = jax.random.permutation(k_perm, batch)

            def split(x: jax.Array) -> jax.Array:
                return x[order].reshape((config.minibatches, minibatch, *x.shape[1:]))

            def minibatch_step(
                carry: tuple[Any, Any], mb: tuple[Transition, jax.Array, jax.Array]
            ) -> tuple[tuple[Any, Any], jax.Array]:
                weights, opt_state = carry
                loss, grads = jax.value_and_grad(loss_fn)(weights, *mb)
                updates, opt_state = optimizer.update(grads, opt_state)
                return (optax.apply_updates(weights, updates), opt_state), loss

            mbs = (jax.tree.map(split, flat), split(flat_adv), split(flat_ret))
            (weights, opt_state), losses = jax.lax.scan(minibatch_step, (weights, opt_state), mbs)
            return (weights, opt_state, key), losses.mean()

        (weights, opt_state, key), losses = jax.lax.scan(
            epoch, (weights, opt_state, key), None, config.epochs
        )
        return (weights, opt_state, env_state, obs, key), losses.mean()

    def train(runner: tuple[Any, ...]) -> tuple[tuple[Any, ...], jax.Array]:
        return jax.lax.scan(one_update, runner, None, config.updates)

    return init, jax.jit(train)


def measure(config: PeerConfig) -> dict[str, Any]:
    """Compile (timed apart), then time `config.updates` updates; returns the rates."""
    init, train = make_train(config)
    runner = init(jax.random.PRNGKey(config.seed))
    start = time.perf_counter()
    runner, _ = jax.block_until_ready(train(runner))
    first_call = time.perf_counter() - start
    start = time.perf_counter()
    runner, losses = jax.block_until_ready(train(runner))
    seconds = time.perf_counter() - start
    env_steps = config.updates * config.steps_per_update
    return {
        "config": asdict(config),
        "env_steps": env_steps,
        "seconds": seconds,
        "steps_per_second": env_steps / seconds,
        # The first call compiles and then runs the same updates once.
        "compile_seconds": max(first_call - seconds, 0.0),
        "loss": float(np.asarray(losses)[-1]),
        "jax": jax.__version__,
        "devices": [str(d) for d in jax.devices()],
    }


def main(argv: list[str] | None = None) -> int:
    """Print one measurement as JSON."""
    parser = argparse.ArgumentParser(prog="python -m rlgpt.bench.peer_jax", description=__doc__)
    defaults = PeerConfig()
    parser.add_argument("--envs", type=int, default=defaults.envs)
    parser.add_argument("--resets", choices=["optimistic", "fresh"], default=defaults.resets)
    parser.add_argument("--n-steps", type=int, default=defaults.n_steps)
    parser.add_argument("--updates", type=int, default=defaults.updates)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    config = PeerConfig(
        envs=args.envs,
        resets=args.resets,
        n_steps=args.n_steps,
        updates=args.updates,
        seed=args.seed,
    )
    print(json.dumps(measure(config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
