"""Crafter's standard metrics: per-achievement success rates and the Crafter score."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from crafter import constants

ACHIEVEMENTS: tuple[str, ...] = tuple(constants.achievements)


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


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for fewer than two values)."""
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)
