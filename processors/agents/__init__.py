"""faust agents, one module per concern. Importing this package registers them with the app."""

from processors.agents import archive, health

__all__ = ["archive", "health"]
