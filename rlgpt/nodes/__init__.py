"""Node plugins: planner, coder, RL trainer, critic."""
