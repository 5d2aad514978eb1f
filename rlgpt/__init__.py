"""rlgpt: RL-GPT as a LangGraph app (planner, coder, RL trainer and critic over code actions)."""

__version__ = "0.1.0"
