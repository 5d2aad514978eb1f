"""Trained SB3 policies as library actions: loaded on the CPU, once per process."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

# Loaded once per process (env workers reuse them across episodes).
_POLICY_CACHE: dict[tuple[str, float], Any] = {}


def _recorded_maskable(file: Path) -> bool | None:
    """Whether an SB3 zip holds a MaskablePPO policy (read from its `data`); None if unknown."""
    try:
        with zipfile.ZipFile(file) as archive:
            data = json.loads(archive.read("data"))
        module = str(data["policy_class"]["__module__"])
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    return "maskable" in module


def load_policy(path: str | Path, algo: str = "") -> Any:
    """Load an SB3 PPO / MaskablePPO zip on the CPU, cached per process by path and mtime.

    The algorithm recorded in the zip wins over `algo` (a manifest may omit it).
    """
    import torch

    file = Path(path)
    key = (str(file.resolve()), file.stat().st_mtime)
    if key not in _POLICY_CACHE:
        torch.set_num_threads(1)
        recorded = _recorded_maskable(file)
        maskable = recorded if recorded is not None else algo == "maskable_ppo"
        if maskable:
            from sb3_contrib import MaskablePPO

            _POLICY_CACHE[key] = MaskablePPO.load(file, device="cpu")
        else:
            from stable_baselines3 import PPO

            _POLICY_CACHE[key] = PPO.load(file, device="cpu")
    return _POLICY_CACHE[key]


def is_maskable(model: Any) -> bool:
    """Whether a loaded model takes action masks (MaskablePPO)."""
    return type(model).__name__ == "MaskablePPO"
