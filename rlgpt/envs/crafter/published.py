"""Published per-achievement results on Crafter (Hafner, 2021), for reports and benchmarks."""

from __future__ import annotations

#: Human experts' success rate on `collect_diamond`, as the Crafter paper reports it.
HUMAN_DIAMOND_RATE = 0.12
