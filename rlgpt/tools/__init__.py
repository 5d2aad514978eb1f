"""Tools: the RL pipeline, the code-action sandbox, evaluation rollouts, the action library."""
