"""The Crafter skill API code actions call: perception, navigation, single interactions.

Import `rlgpt.envs.crafter.skills.api` for `SkillAPI` and `skill_specs`.
"""
