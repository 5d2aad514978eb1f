"""The Crafter score and the learning table against hand-computed values."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from rlgpt.bench.learning import check_runs_dir, library_origin, merge_learning
from rlgpt.bench.learning_config import LearningConfig
from rlgpt.bench.learning_report import (
    ANCHORS,
    learning_markdown,
    learning_rows,
    observation_text,
)
from rlgpt.bench.score import ACHIEVEMENTS, achievement_rates, crafter_score, mean_and_spread
from rlgpt.envs.base import load_adapter
from rlgpt.tools.rl_job import RLJob
from tests.helpers import assert_contains


def test_score_extremes_and_uniform_rates() -> None:
    assert crafter_score({}) == 0.0
    assert crafter_score(dict.fromkeys(ACHIEVEMENTS, 1.0)) == pytest.approx(100.0)
    # Equal rates everywhere: the geometric mean of (1 + 50) is 51, so the score is 50.
    assert crafter_score(dict.fromkeys(ACHIEVEMENTS, 0.5)) == pytest.approx(50.0)


def test_score_hand_computed() -> None:
    # One achievement always, the rest never: 101 ** (1/22) - 1 = 0.233404...
    assert crafter_score({"collect_wood": 1.0}) == pytest.approx(0.233404, abs=1e-6)
    # 90 % and 50 %: (91 * 51) ** (1/22) - 1 = 0.467791...
    rates = {"collect_wood": 0.9, "place_table": 0.5}
    assert crafter_score(rates) == pytest.approx((91 * 51) ** (1 / 22) - 1)
    assert crafter_score(rates) == pytest.approx(0.467791, abs=1e-6)
    # The score is not the arithmetic mean of the percentages (which would be 6.36).
    assert crafter_score(rates) < sum(rates.values()) * 100 / 22
    # The env plugin's score (what a run's evaluation reports) is this one.
    assert load_adapter("crafter").score(rates) == crafter_score(rates)


def test_score_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        crafter_score({"collect_wood": 90.0})
    with pytest.raises(ValueError, match="unknown achievements"):
        crafter_score({"collect_gold": 0.5})


def test_achievement_rates_from_episode_infos_and_names() -> None:
    episodes = [
        {"collect_wood": 2, "place_table": 0},
        {"collect_wood": 1, "place_table": 1},
        ["collect_wood"],
        [],
    ]
    rates = achievement_rates(episodes)
    assert set(rates) == set(ACHIEVEMENTS)
    assert rates["collect_wood"] == 0.75
    assert rates["place_table"] == 0.25
    assert rates["collect_diamond"] == 0.0
    assert achievement_rates([]) == dict.fromkeys(ACHIEVEMENTS, 0.0)


def test_mean_and_spread() -> None:
    assert mean_and_spread([]) == (0.0, 0.0)
    assert mean_and_spread([3.0]) == (3.0, 0.0)
    mean, std = mean_and_spread([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert std == pytest.approx(1.0)


def _method(key: str, observation: str, score: float = 4.0) -> dict[str, object]:
    run = {
        "seed": 0,
        "score": score,
        "episodes": 10,
        "env_steps": 5000,
        "wall_time": 10.0,
        "steps_per_second": 500.0,
        "achievements": dict.fromkeys(ACHIEVEMENTS, 0.0),
    }
    rates = dict.fromkeys(ACHIEVEMENTS, 0.0) | {"collect_wood": 0.8}
    return {
        "key": key,
        "label": f"method {key} [scripted baseline library]",
        "observation": observation,
        "env_steps_used": [5000, 4000],
        "score_mean": score,
        "score_std": 1.5,
        "achievements_mean": rates,
        "runs": [run, {**run, "seed": 1, "env_steps": 4000}],
    }


def _result(origin: str) -> dict[str, object]:
    return {
        "config": {
            "budget": 5000,
            "budget_name": "5k",
            "episode_length": 10_000,
            "env_seed_stride": 10_000,
            "privileged": False,
            "library": "/tmp/lib",
            "library_origin": origin,
        },
        "methods": [_method("b", "pixels"), _method("a", "symbolic", 20.0)],
    }


def test_learning_table_sets_only_the_pixel_protocol_beside_anchors() -> None:
    result = _result("scripted baseline (hand-written library, not produced by the model)")
    rows = learning_rows(result, "pixels")
    assert len(rows) == len(ANCHORS) + 1
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    ours = next(r for r in rows if r["ours"])
    # 4.0 sits between PPO (SB3) 4.6 and Random 1.6.
    names = [r["method"] for r in rows]
    assert names.index(ours["method"]) == names.index("PPO (SB3)") + 1
    assert ours["used"] == "4,000-5,000"
    # The symbolic row is alone in its table, however high its score.
    (symbolic,) = learning_rows(result, "symbolic")
    assert symbolic["score"] == 20.0 and symbolic["ours"]
    text = learning_markdown(result)
    pixel_part, symbolic_part = text.split("## Second protocol")
    assert_contains(
        pixel_part,
        "**4.0 ± 1.5** | 2 | 4.00, 4.00 | 4,000-5,000 |",
        "| Human experts | the game screen | 50.5 |",
        "| AdaRefiner | 64x64 RGB | 28.2 |  |  | 5M |",
        "64x64 RGB (crafter's image), CNN; code actions read the skill API",
        "scripted baseline",
        "privileged full-map mode: not used",
    )
    assert "**20.0" not in pixel_part
    assert_contains(
        symbolic_part,
        "Not comparable with the published results",
        "| method a [scripted baseline library] | symbolic 9x7 one-hot view + inventory, MLP "
        "| **20.0 ± 1.5** |",
        "collect_diamond (human 12%)",
        "| collect_wood | 80.0 | 80.0 |",
    )
    assert "Human experts" not in symbolic_part
    assert math.isclose(crafter_score({"collect_wood": 0.8}), 0.2210946, abs_tol=1e-6)


def test_merge_pools_runs_of_one_budget_and_observation() -> None:
    first = _result("scripted baseline")
    first["config"] |= {"seeds": [0, 1], "methods": ["a", "b"]}  # type: ignore[operator]
    second = _result("scripted baseline")
    second["config"] |= {"seeds": [2], "methods": ["b"]}  # type: ignore[operator]
    method = _method("b", "pixels")
    method["runs"] = [{**method["runs"][0], "seed": 2, "score": 7.0}]  # type: ignore[index]
    second["methods"] = [method]
    merged = merge_learning([first, second])
    pooled = {(m["key"], m["observation"]): m for m in merged["methods"]}
    assert sorted(pooled) == [("a", "symbolic"), ("b", "pixels")]
    b = pooled[("b", "pixels")]
    assert [r["seed"] for r in b["runs"]] == [0, 1, 2]
    assert b["score_mean"] == pytest.approx(5.0)
    assert b["score_per_seed"] == {"0": 4.0, "1": 4.0, "2": 7.0}
    assert len(pooled[("a", "symbolic")]["runs"]) == 2
    assert merged["config"]["seeds"] == [0, 1, 2]
    assert len(merged["config"]["merged_from"]) == 2

    with pytest.raises(ValueError, match=r"run seed 2 .* is in two files"):
        merge_learning([first, second, second])
    other_budget = _result("scripted baseline")
    other_budget["config"] |= {"budget": 9000}  # type: ignore[operator]
    with pytest.raises(ValueError, match="different budgets"):
        merge_learning([first, other_budget])
    with pytest.raises(ValueError, match="nothing to merge"):
        merge_learning([])


def test_run_seeds_train_on_disjoint_env_seeds(tmp_path: Path) -> None:
    config = LearningConfig(seeds=[0, 1, 2], n_envs=8)
    ranges = []
    for seed in config.seeds:
        job = RLJob(task="crafter:score", seed=seed, env_seed=config.env_seed(seed), n_envs=8)
        # Up to 100 resumed attempts, each on 8 unused env seeds.
        first, last = job.first_env_seed(0), job.first_env_seed(100) + 7
        ranges.append(set(range(first, last + 1)))
    assert not (ranges[0] & ranges[1]) and not (ranges[1] & ranges[2])
    # Without an env seed SB3's convention holds: env i of seed s starts at s + i.
    assert RLJob(task="crafter:score", seed=4).first_env_seed(0) == 4


def test_runs_dir_refuses_runs_of_another_config(tmp_path: Path) -> None:
    check_runs_dir(LearningConfig(budget=5000), tmp_path)
    check_runs_dir(LearningConfig(budget=5000, seeds=[0, 1]), tmp_path)  # more seeds: fine
    with pytest.raises(ValueError, match=r"differs in \['budget', 'observation'\]"):
        check_runs_dir(LearningConfig(budget=6000, observation="symbolic"), tmp_path)
    with pytest.raises(ValueError, match="distinct"):
        LearningConfig(seeds=[1, 1]).validate()


def test_rows_whose_policies_call_code_actions_say_they_read_the_skill_api() -> None:
    for key in ("b", "d"):
        text = observation_text({"key": key, "observation": "pixels"})
        assert text == "64x64 RGB (crafter's image), CNN; code actions read the skill API"
    assert "skill API" not in observation_text({"key": "a", "observation": "symbolic"})


def test_library_origin_names_runs_the_shared_library_and_scripted_code(tmp_path: Path) -> None:
    run_library = tmp_path / "runs" / "r1" / "library"
    run_library.mkdir(parents=True)
    (run_library.parent / "metrics.json").write_text("{}")
    shared = tmp_path / "runs" / "shared_library" / "crafter"
    shared.mkdir(parents=True)
    hand_written = tmp_path / "mine"
    hand_written.mkdir()
    assert library_origin(run_library) == "produced by `rlgpt run` r1"
    assert library_origin(shared).startswith(f"the shared library {shared.resolve()} (")
    assert library_origin(hand_written).startswith("scripted baseline")
