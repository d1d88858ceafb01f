"""Typed errors raised by the signal library: each names what is wrong with the input.

Every check in this package raises a subclass of :class:`SignalInputError` (itself a
``ValueError``) instead of returning a number computed from bad data.
"""

from __future__ import annotations


class SignalInputError(ValueError):
    """Base class: the input cannot be analysed as given."""


class EmptyInputError(SignalInputError):
    """The input holds no samples."""


class TooFewSamplesError(SignalInputError):
    """The input is shorter than the algorithm needs."""


class ShapeError(SignalInputError):
    """Arrays have the wrong shape or disagree in length."""


class NonFiniteSampleError(SignalInputError):
    """A sample or timestamp is NaN or infinite."""


class NonMonotonicTimestampError(SignalInputError):
    """Timestamps do not strictly increase."""


class SaturatedSignalError(SignalInputError):
    """The sensor was clipped at its measurement range for too many samples."""


class GapError(SignalInputError):
    """Consecutive samples are further apart than the algorithm can bridge."""


class SampleRateError(SignalInputError):
    """The sampling rate is outside the range the algorithm supports."""


class TimeZoneHistoryError(SignalInputError):
    """A patient's time-zone history is empty, unsorted or names an unknown zone."""


class DatasetUnavailableError(RuntimeError):
    """A validation data set is not present where it was looked for."""
