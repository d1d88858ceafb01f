"""Every Kafka topic, its key and its partition count: the one place that defines them.

All topics are keyed by patient id, so that everything about one patient is in one partition and
so on one worker. Topics are created up front with their partition counts (the development broker
cannot add partitions later, nor compact), faust's own topics included: a table's changelog must
have the partition count of the table, or a worker crashes on its first write to a partition the
changelog lacks.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    description: str
    key: str = "patient_id"


RAW_IMU = TopicSpec("rtm.raw.imu.v1", 8, "IMU sample batches (binary columnar encoding)")
RAW_ACTIVITY = TopicSpec("rtm.raw.activity.v1", 4, "step / activity intervals at the source's granularity")
RAW_SESSION = TopicSpec("rtm.raw.session.v1", 4, "exercise session start/end markers")
RAW_TIMEZONE = TopicSpec("rtm.raw.timezone.v1", 4, "patient time-zone changes")
DEVICE_ASSIGNMENT = TopicSpec("rtm.device.assignment.v1", 4, "device assigned to / released from an episode")
RESULTS_REPS = TopicSpec("rtm.results.reps.v1", 4, "per-set repetition and ROM results")
DEAD_LETTER = TopicSpec("rtm.deadletter.v1", 4, "records that failed to parse or validate, with the reason")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    RAW_IMU,
    RAW_ACTIVITY,
    RAW_SESSION,
    RAW_TIMEZONE,
    DEVICE_ASSIGNMENT,
    RESULTS_REPS,
    DEAD_LETTER,
)

@dataclass(frozen=True)
class TableSpec:
    """A faust table of the processors: its changelog is a topic of the consumer group's own."""

    name: str
    partitions: int

    def changelog(self, app_id: str) -> str:
        return f"{app_id}-{self.name}-changelog"


# Per patient, the latest batch time of each device (co-partitioned with the IMU topic).
DEVICE_LAST_SEEN = TableSpec("device-last-seen", RAW_IMU.partitions)
TABLES: tuple[TableSpec, ...] = (DEVICE_LAST_SEEN,)


def internal_topics(app_id: str) -> tuple[TopicSpec, ...]:
    """faust's own topics for the consumer group `app_id`: table changelogs and the assignor's
    leader topic (one partition). The processors use no repartitioning (`group_by`) topics."""
    return (
        *(TopicSpec(t.changelog(app_id), t.partitions, f"changelog of the {t.name} table") for t in TABLES),
        TopicSpec(f"{app_id}-__assignor-__leader", 1, "faust's partition assignor"),
    )


def group_topics(app_id: str) -> tuple[TopicSpec, ...]:
    """Every topic the workers of consumer group `app_id` need before they consume."""
    return (*ALL_TOPICS, *internal_topics(app_id))

# Which raw topic carries each canonical event kind a device or the simulated fleet sends (see rtm.contract).
# Therapist time entries are written to the database directly (eligibility/timeentries.py), not streamed.
TOPIC_BY_KIND: dict[str, TopicSpec] = {
    "imu_batch": RAW_IMU,
    "activity_interval": RAW_ACTIVITY,
    "session_marker": RAW_SESSION,
    "timezone_change": RAW_TIMEZONE,
    "device_assignment": DEVICE_ASSIGNMENT,
}
