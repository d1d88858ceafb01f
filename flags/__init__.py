"""Trend flags for therapists: rules over stored facts, raised once and kept up to date.

Entry points: `evaluate_patients` (after the sinks store a batch), `evaluate_all` (the daily
timer), and the review queue `open_flags`, `acknowledge`, `resolve`. See docs/flags.md.
"""

from flags.model import FlagSummary, Kind, Severity, State
from flags.review import FlagNotFound, FlagStateError, FlagView, acknowledge, open_flags, resolve
from flags.settings import FlagSettings, get_flag_settings
from flags.store import evaluate_all, evaluate_patients

__all__ = [
    "FlagNotFound",
    "FlagSettings",
    "FlagStateError",
    "FlagSummary",
    "FlagView",
    "Kind",
    "Severity",
    "State",
    "acknowledge",
    "evaluate_all",
    "evaluate_patients",
    "get_flag_settings",
    "open_flags",
    "resolve",
]
