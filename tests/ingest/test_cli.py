"""The gateway's commands, run against the test database and the session's broker."""

from __future__ import annotations

import pytest

from ingest import cli
from ingest.settings import get_gateway_settings
from rtm.settings import Settings, get_settings
from tests.ingest.conftest import PEPPER, make_care

pytestmark = pytest.mark.integration


def test_clinic_key_and_enrol_commands(
    db_settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RTM_PG_DATABASE", db_settings.pg_database)
    monkeypatch.setenv("RTM_KAFKA_BOOTSTRAP", db_settings.kafka_bootstrap)
    monkeypatch.setenv("RTM_GATEWAY_PEPPER", PEPPER)
    get_settings.cache_clear()
    get_gateway_settings.cache_clear()
    try:
        care = make_care(db_settings)
        assert cli.main(["clinic-key", "create", "clinic-cli", "--name", "CLI clinic", "--label", "ops"]) == 0
        out = capsys.readouterr().out
        assert "rtmc_" in out
        key_id = out.split("key id: ")[1].split()[0]
        assert cli.main(["clinic-key", "revoke", key_id]) == 0
        assert (
            cli.main(
                [
                    "enrol",
                    "device",
                    "--clinic",
                    care.clinic_id,
                    "--patient",
                    care.patient_id,
                    "--episode",
                    care.episode_id,
                    "--device",
                    "cli-dev-1",
                    "--model",
                    care.model_id,
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert "rtmd_" in out
        cred = out.split("credential id: ")[1].split()[0]
        assert cli.main(["enrol", "list", "--clinic", care.clinic_id]) == 0
        assert cred in capsys.readouterr().out
        assert cli.main(["enrol", "revoke", cred]) == 0
        assert (
            cli.main(
                [
                    "enrol",
                    "device",
                    "--clinic",
                    "other",
                    "--patient",
                    care.patient_id,
                    "--episode",
                    care.episode_id,
                    "--device",
                    "cli-dev-2",
                    "--model",
                    care.model_id,
                ]
            )
            == 1
        )
    finally:
        get_settings.cache_clear()
        get_gateway_settings.cache_clear()
