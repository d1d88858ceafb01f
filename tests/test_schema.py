def test_migrated(db):
    assert db.execute("select count(*) from schema_migrations").fetchone()[0] >= 1
    assert db.execute("select count(*) from timescaledb_information.hypertables").fetchone()[0] >= 7
def test_writer_cannot_delete(db):
    import psycopg, pytest
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("delete from imu_batches")
