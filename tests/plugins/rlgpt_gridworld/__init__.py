"""A tiny grid-world env plugin for rlgpt, installed for the tests through its entry point."""
