"""Crafter's tasks (one per achievement, and the score) and the Crafter score."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from rlgpt.envs.base import Predicate, TaskSpec, UnknownTaskError
from rlgpt.envs.crafter.constants import ACHIEVEMENTS, SCORE_TASK


def task_specs() -> dict[str, TaskSpec]:
    """All Crafter tasks: one per achievement plus the score task."""
    specs = {
        f"crafter:{a}": TaskSpec(
            name=f"crafter:{a}",
            env="crafter",
            predicates=(Predicate(kind="achievement", name=a),),
            description=f"Unlock the achievement {a} (reward +1 the first time).",
        )
        for a in ACHIEVEMENTS
    }
    specs[SCORE_TASK] = TaskSpec(
        name=SCORE_TASK,
        env="crafter",
        predicates=(),
        description="Unlock as many of the 22 achievements as possible (Crafter's native reward).",
        score=True,
    )
    return specs


_TASKS = task_specs()


def get_task(name: str) -> TaskSpec:
    """The task of that name; raises UnknownTaskError listing the valid names."""
    if name not in _TASKS:
        raise UnknownTaskError(name, list(_TASKS))
    return _TASKS[name]


def crafter_score(rates: Mapping[str, float]) -> float:
    """Crafter score in percent: `exp(mean(ln(1 + s_i))) - 1` with `s_i` in percent.

    Args:
        rates: Success rate of each achievement as a fraction in [0, 1]; a missing
            achievement counts as 0. The mean is always over all 22 achievements.

    Raises:
        ValueError: When a rate lies outside [0, 1] or names an unknown achievement.
    """
    unknown = sorted(set(rates) - set(ACHIEVEMENTS))
    if unknown:
        raise ValueError(f"unknown achievements {unknown}; known: {list(ACHIEVEMENTS)}")
    total = 0.0
    for name in ACHIEVEMENTS:
        rate = float(rates.get(name, 0.0))
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"success rate of {name} must be in [0, 1], got {rate}")
        total += math.log1p(100.0 * rate)
    return math.exp(total / len(ACHIEVEMENTS)) - 1.0


def achievement_rates(episodes: Iterable[Mapping[str, int] | Iterable[str]]) -> dict[str, float]:
    """Fraction of episodes in which each achievement was unlocked at least once.

    Args:
        episodes: Per episode either an achievement -> count mapping (crafter's
            `info["achievements"]`) or the names of the unlocked achievements.
    """
    counts = dict.fromkeys(ACHIEVEMENTS, 0)
    n = 0
    for episode in episodes:
        n += 1
        if isinstance(episode, Mapping):
            unlocked = {name for name, count in episode.items() if int(count) > 0}
        else:
            unlocked = set(episode)
        for name in unlocked & counts.keys():
            counts[name] += 1
    return {name: (count / n if n else 0.0) for name, count in counts.items()}
