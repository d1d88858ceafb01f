"""faust tables keyed by patient id, co-partitioned with the patient-keyed topics."""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.partitioner import murmur2


def patient_partition(patient_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a message keyed by this patient id."""
    return int(murmur2(patient_id.encode()) & 0x7FFFFFFF) % partitions


class PatientTable(faust.Table[str, Any]):
    """A table whose changelog partition is the patient's topic partition.

    Stock tables take the partition from the event being processed, so they refuse writes made
    after a batch (`noack_take`) has been flushed to the database; the key alone decides here.
    """

    def partition_for_key(self, key: Any) -> int:
        assert self.partitions is not None  # always given: see patient_table
        return patient_partition(str(key), self.partitions)


def patient_table(app: faust.App, name: str, partitions: int, **kwargs: Any) -> PatientTable:
    table = PatientTable(app=app, name=name, partitions=partitions, **kwargs)
    app.tables.add(table)
    return table
