"""Every Kafka topic, its key and its partition count: the one place that defines them.

All topics are keyed by patient id, so that everything about one patient is in one partition and
so on one worker. Topics are created up front with their partition counts (the development broker
cannot add partitions later, nor compact).
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
TIME_ENTRIES = TopicSpec("rtm.therapist.time.v1", 4, "therapist time entries")
RESULTS_REPS = TopicSpec("rtm.results.reps.v1", 4, "per-set repetition and ROM results")
RECOMPUTE = TopicSpec("rtm.eligibility.recompute.v1", 4, "patients whose stored facts changed")
DEAD_LETTER = TopicSpec("rtm.deadletter.v1", 4, "records that failed to parse or validate, with the reason")

ALL_TOPICS: tuple[TopicSpec, ...] = (
    RAW_IMU,
    RAW_ACTIVITY,
    RAW_SESSION,
    RAW_TIMEZONE,
    DEVICE_ASSIGNMENT,
    TIME_ENTRIES,
    RESULTS_REPS,
    RECOMPUTE,
    DEAD_LETTER,
)

BY_NAME: dict[str, TopicSpec] = {t.name: t for t in ALL_TOPICS}

# Which raw topic carries each canonical event kind (see rtm.contract).
TOPIC_BY_KIND: dict[str, TopicSpec] = {
    "imu_batch": RAW_IMU,
    "activity_interval": RAW_ACTIVITY,
    "session_marker": RAW_SESSION,
    "timezone_change": RAW_TIMEZONE,
    "device_assignment": DEVICE_ASSIGNMENT,
    "therapist_time_entry": TIME_ENTRIES,
}
