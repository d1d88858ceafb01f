"""Payer policies: versioned TOML files validated by pydantic (rules are data, never literals).

A policy names every code, threshold, price and disputed interpretation the engine applies.
The files live in `policies/` beside this module; an episode names its policy by `id`.
"""

from __future__ import annotations

import hashlib
import tomllib
from decimal import Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Discipline = Literal["PT", "OT", "SLP"]
Category = Literal["musculoskeletal", "respiratory", "cbt"]
ResultKind = Literal["setup", "supply", "management"]
Channel = Literal["video", "audio", "secure_message", "in_person", "none"]
Role = Literal["therapist", "assistant", "physician", "npp", "clinical_staff"]
Code = Annotated[str, Field(pattern=r"^[0-9A-Z]{5}$")]
PositiveInt = Annotated[int, Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodeSpec(_Strict):
    description: str
    price: Decimal = Field(ge=0)
    recognised: bool = True


class SetupRule(_Strict):
    code: Code
    min_days_first_period: PositiveInt
    date_of_service: Literal["setup_date", "threshold_day"] = "setup_date"
    release_at_threshold: bool = True
    activities: tuple[str, ...] = ("education",)


class CategoryCodes(_Strict):
    long_code: Code
    short_code: Code | None = None


class SupplyRule(_Strict):
    period_days: PositiveInt
    anchor: Literal["first_data_day", "first_counted_day", "setup_date"] = "first_data_day"
    long_min_days: PositiveInt
    short_min_days: PositiveInt | None = None
    bill_period_cut_by_discharge: bool = True
    date_of_service: Literal["period_end", "threshold_day"] = "period_end"
    release_long_code_at_threshold: bool = False
    categories: dict[Category, CategoryCodes]

    @model_validator(mode="after")
    def _consistent(self) -> SupplyRule:
        if self.long_min_days > self.period_days:
            raise ValueError("long_min_days cannot exceed period_days")
        has_short = any(c.short_code for c in self.categories.values())
        if has_short and self.short_min_days is None:
            raise ValueError("short supply codes need short_min_days")
        if self.short_min_days is not None and self.short_min_days >= self.long_min_days:
            raise ValueError("short_min_days must be below long_min_days")
        return self


class ManagementRule(_Strict):
    first_code: Code
    first_minutes: PositiveInt
    addon_code: Code
    addon_minutes: PositiveInt
    short_code: Code | None = None
    short_min_minutes: PositiveInt | None = None
    date_of_service: Literal["threshold_day", "month_end", "last_entry"] = "threshold_day"
    monitoring_active: Literal["device_assigned", "data_day", "supply_period"] = "data_day"

    @model_validator(mode="after")
    def _consistent(self) -> ManagementRule:
        if (self.short_code is None) != (self.short_min_minutes is None):
            raise ValueError("short_code and short_min_minutes go together")
        if self.short_min_minutes is not None and self.short_min_minutes >= self.first_minutes:
            raise ValueError("short_min_minutes must be below first_minutes")
        return self


class InteractiveRule(_Strict):
    channels: tuple[Channel, ...]
    secure_message_counts: bool = False

    def counts(self, channel: str) -> bool:
        return channel in self.channels or (self.secure_message_counts and channel == "secure_message")


class PeopleRule(_Strict):
    eligible_roles: tuple[Role, ...]
    assistant_roles: tuple[Role, ...]
    therapist_roles: tuple[Role, ...]
    therapist_must_be_billing_practitioner: bool = True
    discipline_must_match_roles: tuple[Role, ...] = ()


class ModifierRule(_Strict):
    discipline: dict[Discipline, str]
    assistant: dict[Discipline, str]
    assistant_share_above_percent: Decimal = Field(ge=0, le=100)
    discipline_on: tuple[ResultKind, ...]
    assistant_on: tuple[ResultKind, ...]

    @model_validator(mode="after")
    def _never_on_supply(self) -> ModifierRule:
        if "supply" in self.assistant_on:
            raise ValueError("CQ/CO never apply to device-supply codes")
        return self


class GateRule(_Strict):
    consent_before_data: Literal["exclude_days", "fail"] = "exclude_days"
    rpm_overlap_test: Literal["period", "month"] = "period"


class DataDayRule(_Strict):
    """What makes a patient-local date a data day: applied by the processors' day-facts rebuild
    (`processors/dayfacts.py`), the one place the rule lives. Defaults: see docs/eligibility.md."""

    zero_step_records: bool = False  # a step record reporting 0 steps proves transmission, not wear
    zero_rep_sets: bool = False  # a detected set in which no repetition was found
    unworn_minutes: bool = False  # steps in a minute wear detection marked not worn
    # A record's minute past local midnight whose whole-step share rounds to 0: "rounded_steps"
    # counts the share (0, no data day), "record_steps" counts it as part of a record with steps.
    split_minute: Literal["rounded_steps", "record_steps"] = "rounded_steps"
    # Data older than the patient's first time-zone record: dated in that first zone, in UTC, or
    # not dated at all (excluded from every day).
    before_first_zone: Literal["first_zone", "utc", "exclude"] = "first_zone"


class StatusRule(_Strict):
    final_after_days: Annotated[int, Field(ge=0)] = 7


class Policy(_Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")]
    version: str
    payer: str
    description: str = ""
    currency: str = "USD"
    codes: dict[Code, CodeSpec]
    setup: SetupRule
    supply: SupplyRule
    management: ManagementRule
    interactive: InteractiveRule
    people: PeopleRule
    modifiers: ModifierRule
    gates: GateRule = GateRule()
    status: StatusRule = StatusRule()
    data_day: DataDayRule = DataDayRule()
    # sha256 of the file's text, filled by the loader: ties a result to the exact rules used.
    digest: str = ""

    @model_validator(mode="after")
    def _codes_defined(self) -> Policy:
        used = [self.setup.code, self.management.first_code, self.management.addon_code]
        used += [self.management.short_code] if self.management.short_code else []
        for cat in self.supply.categories.values():
            used += [c for c in (cat.long_code, cat.short_code) if c]
        missing = sorted(c for c in used if c not in self.codes)
        if missing:
            raise ValueError(f"codes used by the rules but not defined under [codes]: {missing}")
        return self

    @property
    def label(self) -> str:
        return f"{self.id}@{self.version}"

    def recognised(self, code: str | None) -> bool:
        return code is not None and code in self.codes and self.codes[code].recognised

    def price(self, code: str) -> Decimal:
        return self.codes[code].price


class PolicyError(ValueError):
    pass


def policy_dir() -> Path:
    return Path(str(resources.files("eligibility") / "policies"))


def parse_policy(text: str) -> Policy:
    data = tomllib.loads(text)
    data["digest"] = hashlib.sha256(text.encode()).hexdigest()
    return Policy.model_validate(data)


@lru_cache(maxsize=32)
def _load_file(path: Path) -> Policy:
    policy = parse_policy(path.read_text())
    if policy.id != path.stem:
        raise PolicyError(
            f"policy file {path.name} declares id {policy.id!r}; the id must match the file name"
        )
    return policy


def available_policies(folder: Path | None = None) -> dict[str, Policy]:
    """Every policy in the folder, by id."""
    base = folder or policy_dir()
    return {p.stem: _load_file(p) for p in sorted(base.glob("*.toml"))}


DEFAULT_POLICY = "medicare-2026"


def load_policy(policy_id: str = DEFAULT_POLICY, folder: Path | None = None) -> Policy:
    path = (folder or policy_dir()) / f"{policy_id}.toml"
    if not path.exists():
        raise PolicyError(f"unknown payer policy {policy_id!r}")
    return _load_file(path)
