"""faust agents, one module per concern. Importing this package registers them with the app."""

from processors.agents import analysis, guard, health, raw

__all__ = ["analysis", "guard", "health", "raw"]
