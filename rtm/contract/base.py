"""What every canonical event carries: a schema version, provenance and a deterministic id.

The id is derived from the event's source (kind, device, stream, first-sample time), never from
when it was received, so a phone that resends a batch, or a broker that redelivers it, produces
the same id and every hop downstream can recognise the repeat (docs/architecture.md, rule 1).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rtm.errors import CodedError

# Fixed namespace for uuid5 event ids: changing it would change every id, so never do.
EVENT_ID_NAMESPACE = uuid.UUID("6f3f9a52-3c1e-4c55-9a35-2a8c0a3f7e11")

class ContractViolation(CodedError, ValueError):
    """A value the contract refuses; each subclass is one rule with its stable code. Raised inside
    validators, it reaches the caller inside pydantic's ValidationError (see `violation_code`)."""

    code = "invalid"


class NonFiniteValue(ContractViolation):
    code = "non-finite"


class OutOfPhysicalRange(ContractViolation):
    code = "out-of-physical-range"


class FutureTimestamp(ContractViolation):
    code = "future-timestamp"


class NaiveTimestamp(ContractViolation):
    code = "naive-timestamp"


class UnstorableText(ContractViolation):
    code = "unstorable-text"


def violation_code(exc: ValidationError) -> str:
    """The code of the first refused rule in a validation error ("invalid" for schema errors)."""
    for err in exc.errors():
        cause = err.get("ctx", {}).get("error")
        if isinstance(cause, ContractViolation):
            return cause.code
    return ContractViolation.code


Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")]


def _storable(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold U+0000: refuse it here rather than accept and then
    # have the database refuse the stored event.
    if "\x00" in value:
        raise UnstorableText("contains a NUL character (U+0000), which cannot be stored")
    return value


# Put on every free-text field of the contract (identifiers are restricted by their pattern).
Storable = AfterValidator(_storable)


def _require_aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveTimestamp("timestamp must carry a time-zone offset (UTC instants only)")
    return value.astimezone(UTC)


AwareDatetime = Annotated[datetime, AfterValidator(_require_aware)]


def time_key(value: datetime) -> str:
    """Microsecond-exact UTC text of an instant, the form used inside event ids."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def make_event_id(kind: str, *parts: str) -> uuid.UUID:
    return uuid.uuid5(EVENT_ID_NAMESPACE, "|".join((kind, *parts)))


class Provenance(BaseModel):
    """Where an event came from: the adapter that produced it and the device behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    adapter: Annotated[str, Field(min_length=1, max_length=64), Storable]
    vendor: Annotated[str, Field(min_length=1, max_length=64), Storable]
    device_id: Identifier
    firmware: Annotated[str, Field(max_length=64), Storable] | None = None
    model: Annotated[str, Field(max_length=64), Storable] | None = None


class Event(BaseModel):
    """Base of every canonical event. Subclasses name their `kind` and their id's source fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    kind: ClassVar[str]
    # Numbers and flags are strict across the contract: "12" or 100.7 for a count is an error,
    # not something to coerce (floats accept integers; datetimes, ids and enums parse from text).
    schema_version: Annotated[int, Field(strict=True)] = 1
    event_id: uuid.UUID | None = None
    patient_id: Identifier
    provenance: Provenance

    def id_parts(self) -> tuple[str, ...]:
        raise NotImplementedError

    @model_validator(mode="after")
    def _derive_event_id(self) -> Event:
        derived = make_event_id(self.kind, *self.id_parts())
        if self.event_id is None:
            object.__setattr__(self, "event_id", derived)
        elif self.event_id != derived:
            raise ValueError(
                f"event_id {self.event_id} does not match the id derived from its source fields ({derived})"
            )
        return self

    @property
    def id(self) -> uuid.UUID:
        assert self.event_id is not None  # set by the validator
        return self.event_id

    def key(self) -> bytes:
        """Kafka message key: everything about a patient goes to one partition."""
        return self.patient_id.encode()


def not_in_future(value: datetime, skew: timedelta, now: datetime | None = None) -> None:
    """Reject instants beyond `now + skew` (devices' clocks drift; the future does not exist)."""
    limit = (now or datetime.now(UTC)) + skew
    if value > limit:
        raise FutureTimestamp(f"timestamp {value.isoformat()} is in the future (beyond {skew} clock skew)")


def payload_dict(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json")
