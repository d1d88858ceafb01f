def test_migrated(db):
    assert db.execute("select count(*) from schema_migrations").fetchone()[0] >= 1
    tables = {r[0] for r in db.execute("select hypertable_name from timescaledb_information.hypertables")}
    assert {"imu_batches", "activity_intervals", "activity_minutes", "exercise_sets", "rep_results",
            "data_day_facts"} <= tables
def test_writer_cannot_delete(db):
    import psycopg
    import pytest
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("delete from imu_batches")
