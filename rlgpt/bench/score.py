"""Crafter's standard metrics (per-achievement success rates, the Crafter score) and spreads."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rlgpt.envs.crafter.constants import ACHIEVEMENTS
from rlgpt.envs.crafter.tasks import achievement_rates, crafter_score

__all__ = ["ACHIEVEMENTS", "achievement_rates", "crafter_score", "mean_and_spread"]


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for fewer than two values)."""
    if not values:
        return 0.0, 0.0
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)
