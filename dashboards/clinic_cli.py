"""`rtm clinic ...`: the clinic's onboarding operations for its IT's scripts (create a patient, an
episode, a prescription, a discharge; enrol a device and issue its pairing code).

Each command runs as the app's database role with the clinic set, the same row-level security path
as the pages and the API: a script can neither read nor write another clinic's rows. The actor
recorded in the audit log is `cli:<operating-system user>` unless --actor names one. `--json`
prints the result as one JSON object for scripts."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:  # the commands import the app's modules when they run: `rtm` starts light
    from dashboards.auth import Staff
    from dashboards.db import Conn

M = TypeVar("M", bound=BaseModel)
app = typer.Typer(name="clinic", help="Onboarding for clinic IT: patients, episodes, prescriptions, devices.",
                  no_args_is_help=True, add_completion=False)  # fmt: skip

Clinic = Annotated[str, typer.Option(help="clinic id (row-level security confines the command to it)")]
Actor = Annotated[str | None, typer.Option(help="who the audit log names (default cli:<os user>)")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]
# The episode's fields, shared by add-patient and add-episode.
Discipline = Annotated[str, typer.Option(help="PT | OT | SLP")]
BillingTherapist = Annotated[str, typer.Option(help="practitioner id of the billing therapist")]
EpisodeStart = Annotated[str, typer.Option(help="episode start date, YYYY-MM-DD")]
PayerPolicy = Annotated[str, typer.Option(help="payer policy id")]
ConsentDate = Annotated[str | None, typer.Option(help="date consent was obtained, YYYY-MM-DD")]
PlanStart = Annotated[str | None, typer.Option(help="plan of care from, YYYY-MM-DD")]
PlanEnd = Annotated[str | None, typer.Option(help="plan of care until, YYYY-MM-DD")]
SetupDocumented = Annotated[bool, typer.Option(help="set-up and education documented")]


@contextmanager
def _clinic(clinic: str, actor: str | None) -> Iterator[tuple[Conn, Staff]]:
    from dashboards.auth import Staff
    from dashboards.db import AppDb
    from rtm.settings import get_settings

    who = actor or f"cli:{getpass.getuser()}"
    db = AppDb(get_settings(), max_size=1)
    db.open()
    try:
        with db.clinic(clinic, who) as conn:
            yield conn, Staff(who, clinic, "", who, "admin", None, None)
    finally:
        db.close()


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate({k: v for k, v in data.items() if v is not None})
    except ValidationError as exc:
        raise typer.BadParameter("; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'input'}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors())) from None  # fmt: skip


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"refused: {exc}", err=True)
    return typer.Exit(1)


def _out(as_json: bool, result: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(result, default=str) if as_json else text)


def _policies() -> list[str]:
    from eligibility.policy import available_policies

    return sorted(available_policies())


@app.command("add-patient")
def add_patient(
    clinic: Clinic,
    mrn: Annotated[str, typer.Option(help="the patient's external id (MRN or the EMR's id)")],
    tz: Annotated[str, typer.Option(help="IANA time zone, e.g. America/Chicago")],
    discipline: Discipline,
    icd10: Annotated[str, typer.Option(help="ICD-10-CM codes, comma-separated, e.g. M17.11,Z96.651")],
    billing_therapist: BillingTherapist,
    start: EpisodeStart,
    payer_policy: PayerPolicy = "medicare-2026",
    consent: ConsentDate = None,
    plan_start: PlanStart = None,
    plan_end: PlanEnd = None,
    setup_documented: SetupDocumented = False,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Create a patient with their first episode (together or not at all)."""
    from dashboards import records

    form = _validated(records.PatientForm, {
        "external_ref": mrn, "tz": tz, "discipline": discipline, "diagnosis_codes": icd10,
        "billing_practitioner_id": billing_therapist, "start_date": start, "payer_policy": payer_policy,
        "consent_date": consent, "plan_of_care_start": plan_start, "plan_of_care_end": plan_end,
        "setup_documented": setup_documented})  # fmt: skip
    with _clinic(clinic, actor) as (conn, me):
        try:
            pid, eid = records.create_patient(conn, clinic, form, _policies())
        except ValueError as exc:
            raise _fail(exc) from None
        records.audit(conn, me, "cli create patient", [pid], None, "rtm clinic", eid)
    _out(as_json, {"patient_id": pid, "episode_id": eid}, f"created patient {pid} ({mrn}) with episode {eid}")


@app.command("add-episode")
def add_episode(
    clinic: Clinic,
    patient: Annotated[str, typer.Option(help="patient id")],
    discipline: Discipline,
    icd10: Annotated[str, typer.Option(help="ICD-10-CM codes, comma-separated")],
    billing_therapist: BillingTherapist,
    start: EpisodeStart,
    payer_policy: PayerPolicy = "medicare-2026",
    consent: ConsentDate = None,
    plan_start: PlanStart = None,
    plan_end: PlanEnd = None,
    setup_documented: SetupDocumented = False,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """A further episode of a patient whose earlier episodes are discharged."""
    from dashboards import records

    form = _validated(records.EpisodeForm, {
        "discipline": discipline, "diagnosis_codes": icd10, "billing_practitioner_id": billing_therapist,
        "start_date": start, "payer_policy": payer_policy, "consent_date": consent,
        "plan_of_care_start": plan_start, "plan_of_care_end": plan_end, "setup_documented": setup_documented})  # fmt: skip
    with _clinic(clinic, actor) as (conn, me):
        try:
            eid = records.create_episode(conn, clinic, patient, form, _policies())
        except (LookupError, ValueError) as exc:
            raise _fail(exc) from None
        records.audit(conn, me, "cli create episode", [patient], None, "rtm clinic", eid)
    _out(as_json, {"patient_id": patient, "episode_id": eid}, f"created episode {eid} of patient {patient}")


def _episode_patient(conn: Conn, episode: str) -> str:
    row = conn.execute("select patient_id from episodes where episode_id = %s", (episode,)).fetchone()
    if row is None:
        raise _fail(LookupError(f"no episode {episode!r} in this clinic"))
    return str(row[0])


@app.command()
def prescribe(
    clinic: Clinic,
    episode: Annotated[str, typer.Option(help="episode id")],
    exercise: Annotated[str, typer.Option(help="exercise id, e.g. knee_extension")],
    sets: Annotated[int, typer.Option(help="sets per session")],
    reps: Annotated[int, typer.Option(help="repetitions per set")],
    days_per_week: Annotated[int, typer.Option(help="days per week (0 stops the exercise)")],
    effective_from: Annotated[str, typer.Option("--from", help="from this date, YYYY-MM-DD")] = "",
    target_rom: Annotated[float | None, typer.Option(help="target range of motion, degrees")] = None,
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Add a prescription (replaces the one of the same exercise and start date)."""
    from dashboards import records

    form = _validated(records.PrescriptionForm, {
        "exercise": exercise, "sets": sets, "reps": reps, "sessions_per_week": days_per_week,
        "target_rom_deg": target_rom, "effective_from": effective_from or date.today().isoformat()})  # fmt: skip
    with _clinic(clinic, actor) as (conn, me):
        pid = _episode_patient(conn, episode)
        records.add_prescription(conn, episode, form, me.staff_id)
        records.audit(conn, me, "cli prescribe", [pid], None, "rtm clinic", f"{episode}: {exercise}")
    _out(as_json, {"episode_id": episode, **form.model_dump()},
         f"prescribed {exercise} {sets} x {reps}, {days_per_week} days a week, from {form.effective_from}")


@app.command()
def discharge(
    clinic: Clinic,
    episode: Annotated[str, typer.Option(help="episode id")],
    on: Annotated[str, typer.Option(help="discharge date, YYYY-MM-DD")],
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Discharge an episode (its monitoring ends on that date)."""
    from dashboards import records

    try:
        day = date.fromisoformat(on)
    except ValueError:
        raise typer.BadParameter(f"--on {on!r} is not YYYY-MM-DD") from None
    with _clinic(clinic, actor) as (conn, me):
        pid = _episode_patient(conn, episode)
        try:
            records.discharge(conn, episode, day)
        except ValueError as exc:
            raise _fail(exc) from None
        records.audit(conn, me, "cli discharge", [pid], None, "rtm clinic", f"{episode} on {day}")
    _out(as_json, {"episode_id": episode, "discharge_date": day}, f"discharged {episode} on {day}")


@app.command("enrol-device")
def enrol_device(
    clinic: Clinic,
    episode: Annotated[str, typer.Option(help="episode id (open)")],
    device: Annotated[str, typer.Option(help="the device's serial")],
    model: Annotated[str, typer.Option(help="device model id")],
    body_site: Annotated[str, typer.Option(help="where it is worn")] = "unknown",
    actor: Actor = None,
    as_json: AsJson = False,
) -> None:
    """Enrol a device to the episode and print its single-use pairing code (and its QR code)."""
    import segno

    from dashboards import records
    from dashboards.settings import get_app_settings
    from ingest.settings import get_gateway_settings
    from rtm.settings import get_settings

    s, a = get_settings(), get_app_settings()
    with _clinic(clinic, actor) as (conn, me):
        pid = _episode_patient(conn, episode)
        try:
            records.check_pairing_request(conn, pid, episode, model)
        except ValueError as exc:
            raise _fail(exc) from None
    pepper = get_gateway_settings().pepper_bytes(s.secrets_dir, s.environment)
    try:
        code = records.enrol_and_issue_pairing_code(s, pepper, clinic, pid, episode, device, model, body_site,
                                                    me.staff_id, a.pairing_code_minutes * 60.0)  # fmt: skip
    except ValueError as exc:
        raise _fail(exc) from None
    with _clinic(clinic, actor) as (conn, me):
        records.audit(conn, me, "cli enrol device", [pid], None, "rtm clinic", device)
    if as_json:
        _out(True, code.model_dump(mode="json"), "")
        return
    typer.echo(f"pairing code {code.code} for device {device}, valid until {code.expires_at:%Y-%m-%d %H:%M} UTC")
    segno.make(f"rtm-pair:{code.code}", error="m").terminal(compact=True)


@app.command()
def patients(clinic: Clinic, actor: Actor = None, as_json: AsJson = False) -> None:
    """List the clinic's patients and their episodes."""
    from dashboards import records
    from dashboards.api import _patients

    with _clinic(clinic, actor) as (conn, me):
        rows = _patients(conn, None)
        records.audit(conn, me, "cli list patients", [None], None, "rtm clinic", f"{len(rows)} patients")
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in rows]))
        return
    for p in rows:
        eps = ", ".join(f"{e.episode_id} {e.discipline}{' discharged' if e.discharge_date else ''}" for e in p.episodes)
        typer.echo(f"{p.patient_id}  {p.external_ref or '-':16s} {p.tz or '-':20s} {eps}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="clinic")
