"""Thresholds of the trend flags: pydantic-settings read from RTM_FLAGS_* environment variables.

Every number a rule compares against lives here (rules are data). The thresholds used are copied
into each flag's evidence, so a flag explains itself even after the settings change.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Ratio = Annotated[float, Field(gt=0, le=1)]
Days = Annotated[int, Field(ge=1, le=90)]
Degrees = Annotated[float, Field(ge=0, le=180)]


class FlagSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RTM_FLAGS_", extra="ignore", frozen=True)

    # --- adherence: exercise days in the last complete local days versus the plan ---------------
    adherence_window_days: Days = 7
    adherence_warn_ratio: Ratio = 0.75  # below: medium
    adherence_high_ratio: Ratio = 0.4  # below: high
    # The plan must have been in force this many days of the window: a new plan is not judged yet.
    adherence_min_plan_days: Days = 7
    # Plan for episodes without an exercise prescription row; None: no adherence flag without a plan.
    default_sessions_per_week: Annotated[int, Field(ge=1, le=21)] | None = None

    # --- no data: complete local days since the last data day -----------------------------------
    no_data_days: Days = 3  # at least: medium
    no_data_high_days: Days = 7  # at least: high

    # --- dose: full repetitions per session versus prescribed sets x reps -----------------------
    dose_window_days: Days = 7
    dose_warn_ratio: Ratio = 0.8  # median session ratio below: medium
    dose_high_ratio: Ratio = 0.5  # below: high
    dose_min_sessions: Annotated[int, Field(ge=1)] = 2

    # --- ROM per session (median of full repetitions) -------------------------------------------
    rom_min_reps: Annotated[int, Field(ge=1)] = 3  # full reps a session needs to have a ROM value

    # --- ROM trend: Theil-Sen slope and Mann-Kendall test over the recent weeks ----------------
    rom_trend_days: Annotated[int, Field(ge=7, le=42)] = 21
    rom_trend_min_sessions: Annotated[int, Field(ge=4)] = 6
    rom_trend_min_span_days: Days = 10
    rom_trend_alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    # Improving needs a significant rise of at least this much; anything less is "stalled".
    rom_min_gain_deg_per_week: Degrees = 1.0
    # Regressing needs a significant fall of at least this much.
    rom_regress_deg_per_week: Degrees = 1.0

    # --- sudden ROM drop: latest session against the median of the sessions before it ----------
    rom_drop_baseline_sessions: Annotated[int, Field(ge=2, le=30)] = 5
    rom_drop_min_baseline: Annotated[int, Field(ge=2)] = 3
    rom_drop_z: Annotated[float, Field(gt=0)] = 3.0  # robust z at or below -z
    rom_drop_min_deg: Degrees = 8.0  # and a drop at least this large (clinically meaningful)
    rom_drop_high_deg: Degrees = 15.0  # a drop at least this large: high
    rom_drop_sigma_floor_deg: Annotated[float, Field(gt=0)] = 2.0  # a MAD of ~0 must not explode z

    # --- lifecycle --------------------------------------------------------------------------------
    # A flag auto-resolved less than this long ago is reopened rather than raised anew (no flapping).
    reopen_within_hours: Annotated[float, Field(ge=0)] = 72.0
    evaluate_batch_size: Annotated[int, Field(ge=1)] = 500  # patients per transaction in evaluate_all

    @model_validator(mode="after")
    def _ordered(self) -> FlagSettings:
        if self.adherence_high_ratio >= self.adherence_warn_ratio:
            raise ValueError("adherence_high_ratio must be below adherence_warn_ratio")
        if self.dose_high_ratio >= self.dose_warn_ratio:
            raise ValueError("dose_high_ratio must be below dose_warn_ratio")
        if self.no_data_high_days < self.no_data_days:
            raise ValueError("no_data_high_days must be at least no_data_days")
        if self.rom_drop_high_deg < self.rom_drop_min_deg:
            raise ValueError("rom_drop_high_deg must be at least rom_drop_min_deg")
        if self.rom_drop_min_baseline > self.rom_drop_baseline_sessions:
            raise ValueError("rom_drop_min_baseline cannot exceed rom_drop_baseline_sessions")
        if self.rom_trend_min_span_days >= self.rom_trend_days:
            raise ValueError("rom_trend_min_span_days must be below rom_trend_days")
        return self

    @property
    def lookback_days(self) -> int:
        """How many local days of facts a rule may look at (plus one for time-zone slack)."""
        return max(self.adherence_window_days, self.dose_window_days, self.rom_trend_days) + 1

    def subset(self, *prefixes: str) -> dict[str, Any]:
        """The thresholds a rule used, for its evidence."""
        return {k: v for k, v in self.model_dump().items() if k.startswith(prefixes)}


@lru_cache(maxsize=1)
def get_flag_settings() -> FlagSettings:
    return FlagSettings()
