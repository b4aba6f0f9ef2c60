"""The agent's actions, one module each, over any Storage."""
