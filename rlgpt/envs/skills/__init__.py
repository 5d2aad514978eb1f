"""The skill API that code actions call: perception, navigation, single interactions."""

from rlgpt.envs.skills.api import SkillAPI, skill_specs
from rlgpt.envs.skills.memory import MemoryMap

__all__ = ["MemoryMap", "SkillAPI", "skill_specs"]
