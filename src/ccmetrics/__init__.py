"""ccmetrics: what Claude Code costs a team and what it does for it."""

__version__ = "0.1.0"
