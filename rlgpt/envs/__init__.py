"""Environment adapters (Crafter by default) and the skill API."""
