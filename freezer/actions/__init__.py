"""The agent's actions, one module each, over any Storage, and the helpers of one run (lock, priority, ...)."""
