"""Status database against SQLite and a real PostgreSQL server.

PostgreSQL: the URL comes from ``L2A_TEST_POSTGRES_URL`` (a server the caller started, e.g.
with ``scripts/pg-test-server.sh``); without it, and where ``pg_ctl`` exists, the session
starts a throw-away server itself. Where PostgreSQL is missing the PostgreSQL cases skip,
or fail under CI (``CI`` or ``L2A_REQUIRE_POSTGRES`` set). Every test gets a fresh database.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from l2a.errors import InputError
from l2a.io.identity import ProductName, parse_product_name
from l2a.paths import REPO_ROOT
from l2a.production.db import Database, normalise_url
from l2a.production.models import JobMode, JobState, ProductState

SCRIPT = REPO_ROOT / "scripts" / "pg-test-server.sh"

TOULOUSE = [
    "S2A_MSIL1C_20240120T105341_N0510_R051_T31TCJ_20240120T125244.SAFE",
    "S2B_MSIL1C_20240305T104819_N0510_R051_T31TCJ_20240305T125347.SAFE",
]


def _require_postgres() -> bool:
    return bool(os.environ.get("L2A_REQUIRE_POSTGRES") or os.environ.get("CI"))


def _have_pg_ctl() -> bool:
    return bool(shutil.which("pg_ctl") or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL server (maintenance database) for this session."""
    url = os.environ.get("L2A_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    if not _have_pg_ctl() and not _require_postgres():
        pytest.skip(
            "PostgreSQL not available: install it (scripts/setup-system.sh) or set L2A_TEST_POSTGRES_URL"
        )
    folder = tempfile.mkdtemp(prefix="l2a-pg.", dir="/tmp")
    try:
        proc = subprocess.run(
            ["bash", str(SCRIPT), "start", folder],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        proc = None
        err = str(exc)
    else:
        err = proc.stderr
    if proc is None or proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        msg = f"could not start a test PostgreSQL server: {err.strip()[-2000:]}"
        if _require_postgres():
            pytest.fail(msg)
        pytest.skip(msg)
    try:
        yield proc.stdout.strip().splitlines()[-1]
    finally:
        subprocess.run(
            ["bash", str(SCRIPT), "stop", folder], capture_output=True, timeout=120, check=False
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'status' / 'l2a.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    import psycopg

    admin = make_url(server).set(drivername="postgresql")
    conninfo = admin.render_as_string(hide_password=False)
    name = f"l2a_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    database.upgrade()
    yield database
    database.dispose()


def _name(
    tile: str,
    when: datetime,
    baseline: str = "0510",
    generated: datetime | None = None,
    platform: str = "S2A",
) -> ProductName:
    gen = generated or when + timedelta(hours=2)
    return parse_product_name(
        f"{platform}_MSIL1C_{when:%Y%m%dT%H%M%S}_N{baseline}_R051_T{tile}_{gen:%Y%m%dT%H%M%S}"
    )


T0 = datetime(2024, 1, 1, 10, 53, 41, tzinfo=UTC)


# --------------------------------------------------------------------------- schema
def test_migrations_match_models_and_are_idempotent(db: Database) -> None:
    assert db.current_revision() == "0002"
    assert db.schema_differences() == []  # `alembic check`: models == migrated schema
    db.upgrade()  # again: nothing to do
    db.downgrade("base")
    assert db.current_revision() is None
    with db.engine.connect() as conn:
        tables = set(conn.dialect.get_table_names(conn))
    assert tables <= {"alembic_version"}
    db.upgrade()
    assert db.schema_differences() == []


def test_upgrade_from_0001_keeps_the_data(db_url: str) -> None:
    """A database made by the first schema (before the runs table) upgrades in place."""
    db = Database(db_url)
    db.downgrade("base")
    db.upgrade("0001")
    pid = db.register_product(_name("31TCJ", T0), source="inbox")[0].id
    db.upgrade()
    assert db.current_revision() == "0002" and db.schema_differences() == []
    product = db.get_product(pid)
    assert product is not None and product.tile == "31TCJ"
    assert db.start_run("h:1", "run", "local") > 0
    db.dispose()


def test_runs_heartbeat_end_and_staleness(db: Database) -> None:
    from sqlalchemy import update

    from l2a.production.models import Run, utcnow

    assert db.last_run() is None and db.active_runs(120.0) == []
    a = db.start_run("host-a:1", "watch", "local", scheduler="tcp://127.0.0.1:1",
                     dashboard_link="http://127.0.0.1:8788/status")
    b = db.start_run("host-b:2", "run", "scheduler", scheduler="tcp://10.0.0.5:8786")
    live = db.active_runs(120.0)
    assert [r.id for r in live] == [b, a]  # latest first
    assert live[1].dashboard_link == "http://127.0.0.1:8788/status" and live[0].dashboard_link is None
    # a killed run stops beating: stale after the threshold, its row kept
    with db.session() as s:
        s.execute(update(Run).where(Run.id == b).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    assert [r.id for r in db.active_runs(120.0)] == [a]
    db.heartbeat_run(b)
    assert {r.id for r in db.active_runs(120.0)} == {a, b}
    db.finish_run(a)
    assert [r.id for r in db.active_runs(120.0)] == [b]
    last = db.last_run()
    assert last is not None and last.id == b and last.finished_at is None


def test_sqlite_pragmas(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'a' / 'l2a.db'}")
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # foreign keys are enforced
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), db.session() as s:
        s.execute(
            text(
                "INSERT INTO jobs (product_id, tile, sensing_time, mode, state, priority, attempts, "
                "max_attempts, created_at) VALUES (999, '31TCJ', '2024-01-01', 'INIT', 'queued', 0, 0, 3, "
                "'2024-01-01')"
            )
        )
    db.dispose()


def test_url_normalisation() -> None:
    assert normalise_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalise_url("sqlite:///x.db").drivername == "sqlite"
    with pytest.raises(InputError, match="unsupported database"):
        normalise_url("mysql://u@h/db")
    with pytest.raises(InputError, match="not a database URL"):
        normalise_url("not a url")


# --------------------------------------------------------------------------- products
@pytest.mark.sample_data
def test_register_real_products_idempotently(db: Database, sample_path) -> None:  # type: ignore[no-untyped-def]
    folder = sample_path("alcd_toulouse_T31TCJ/safe")
    for safe in TOULOUSE:
        path = folder / safe
        p, created = db.register_product(
            parse_product_name(str(path)), source=str(path), site="toulouse"
        )
        assert created and p.state == ProductState.DISCOVERED
        again, created2 = db.register_product(str(path), source=str(path))
        assert not created2 and again.id == p.id
    products = db.find_products(tile="31TCJ")
    assert [p.name for p in products] == [s.removesuffix(".SAFE") for s in TOULOUSE]
    assert products[0].sensing_time == datetime(
        2024, 1, 20, 10, 53, 41, tzinfo=UTC
    )  # aware UTC back
    assert products[0].baseline == "05.10" and products[0].relative_orbit == 51
    assert db.status_counts() == [("toulouse", "31TCJ", ProductState.DISCOVERED, 2)]


def test_newer_baseline_supersedes_and_cancels_queued_job(db: Database) -> None:
    old, _ = db.register_product(_name("31TCJ", T0, "0400"), source="a")
    job = db.enqueue_job(old.id, JobMode.INIT)
    new, created = db.register_product(
        _name("31TCJ", T0, "0510", T0 + timedelta(days=400)), source="b"
    )
    assert created and new.state == ProductState.DISCOVERED
    old2 = db.get_product(old.id)
    assert (
        old2 is not None
        and old2.state == ProductState.SUPERSEDED
        and old2.superseded_by_id == new.id
    )
    assert "superseded by" in (old2.error or "")
    assert db.jobs()[0].id == job.id and db.jobs()[0].state == JobState.CANCELLED
    # The old baseline arriving again changes nothing; an even older one is superseded at once.
    _, created = db.register_product(_name("31TCJ", T0, "0400"), source="a")
    assert not created
    older, created = db.register_product(_name("31TCJ", T0, "0300"), source="c")
    assert created and older.state == ProductState.SUPERSEDED and older.superseded_by_id == new.id
    assert new.key == old.key == older.key


def test_same_product_from_another_source_is_a_duplicate(db: Database) -> None:
    safe = parse_product_name("S2A_MSIL2A_20220401T083601_N0400_R064_T34LBQ_20220401T110010")
    p, _ = db.register_product(safe, source="/inbox/x.SAFE")
    item = {
        "id": "S2A_T34LBQ_20220401T090142_L2A",
        "properties": {"s2:processing_baseline": "04.00"},
    }
    from l2a.io.identity import key_from_stac_item

    q, created = db.register_product(key_from_stac_item(item), source="https://stac/x")
    assert not created and q.id == p.id


def test_incomplete_identity_is_refused(db: Database) -> None:
    with pytest.raises(InputError, match="no tile"):
        db.register_product(
            "S2A_OPER_PRD_MSIL1C_PDMC_20160905T104813_R002_V20160905T005712_20160905T010424.SAFE",
            source="x",
        )


# --------------------------------------------------------------------------- jobs
def test_claim_order_tile_serialisation_retries_and_failure(db: Database) -> None:
    ids = {}
    for tile in ("31TCJ", "31TDH"):
        for d in (10, 0, 5):  # registered out of order
            p, _ = db.register_product(_name(tile, T0 + timedelta(days=d)), source="s")
            ids[tile, d] = db.enqueue_job(p.id, JobMode.NOMINAL).id
    assert db.enqueue_job(db.jobs()[0].product_id).id == db.jobs()[0].id  # idempotent

    a = db.claim_next_job("w1")
    b = db.claim_next_job("w2")
    assert a is not None and b is not None
    # earliest date of each tile, one per tile; a tile with a running job gives nothing more
    assert {a.id, b.id} == {ids["31TCJ", 0], ids["31TDH", 0]}
    assert a.product.state == ProductState.RUNNING and a.attempts == 1 and a.worker == "w1"
    assert db.claim_next_job("w3") is None

    done = db.finish_job(a.id, output_path="/products/x")
    assert done.state == JobState.DONE and done.duration_s is not None and done.duration_s >= 0
    assert db.get_product(done.product_id).state == ProductState.DONE  # type: ignore[union-attr]

    # retry with backoff: the failed date blocks later dates of its tile until it runs again
    failed = db.fail_job(b.id, "DEM tile missing over the sea", backoff_s=600)
    assert failed.state == JobState.QUEUED and failed.not_before is not None
    c = db.claim_next_job("w1")
    assert c is not None and c.tile == a.tile and c.id == ids[a.tile, 5]  # the other tile goes on
    assert db.claim_next_job("w1") is None  # b's tile waits for b's backoff
    later = datetime.now(UTC) + timedelta(seconds=601)
    b2 = db.claim_next_job("w2", now=later)
    assert b2 is not None and b2.id == b.id and b2.attempts == 2
    db.fail_job(b2.id, "again", backoff_s=0)
    b3 = db.claim_next_job("w2")
    assert b3 is not None and b3.id == b.id and b3.attempts == 3
    final = db.fail_job(b3.id, "the L1C product is corrupt: B04 cannot be decoded", backoff_s=0)
    assert final.state == JobState.FAILED
    prod = db.get_product(final.product_id)
    assert prod is not None and prod.state == ProductState.FAILED
    assert prod.error == "the L1C product is corrupt: B04 cannot be decoded"
    # a permanently failed date no longer blocks its tile
    d = db.claim_next_job("w2")
    assert d is not None and d.id == ids[b.tile, 5]

    with pytest.raises(ValueError, match="not running"):
        db.finish_job(final.id)
    counts = {(c.tile, c.state): c.number for c in db.job_counts()}
    assert counts[b.tile, JobState.FAILED] == 1 and counts[a.tile, JobState.DONE] == 1


def test_priority_and_stale_jobs(db: Database) -> None:
    p1, _ = db.register_product(_name("31TCJ", T0), source="s")
    p2, _ = db.register_product(_name("33UWP", T0 + timedelta(days=3)), source="s")
    db.enqueue_job(p1.id)
    urgent = db.enqueue_job(p2.id, priority=-1)
    job = db.claim_next_job("w")
    assert job is not None and job.id == urgent.id
    assert db.requeue_stale_jobs(3600) == 0
    assert db.requeue_stale_jobs(0, now=datetime.now(UTC) + timedelta(seconds=1)) == 1
    again = db.claim_next_job("w2")
    assert again is not None and again.id == urgent.id and again.attempts == 2


def test_finish_job_records_the_composite_in_the_same_transaction(db: Database) -> None:
    """The runner's last step: job done and the tile's composite after the product's own date
    (as stored), together; a job that is not running records neither."""
    p, _ = db.register_product(_name("31TCJ", T0), source="s")
    db.enqueue_job(p.id, JobMode.INIT)
    job = db.claim_next_job("w")
    assert job is not None
    db.finish_job(job.id, output_path="/products/x", composite_path="/c/1.nc")
    c = db.latest_composite("31TCJ")
    assert c is not None and c.path == "/c/1.nc" and c.job_id == job.id
    assert c.date == db.get_product(p.id).sensing_time  # type: ignore[union-attr]
    assert db.get_product(p.id).state == ProductState.DONE  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="not running"):
        db.finish_job(job.id, composite_path="/c/other.nc")
    c = db.latest_composite("31TCJ")
    assert c is not None and c.path == "/c/1.nc"


def test_composites_published_items_downloads(db: Database) -> None:
    p, _ = db.register_product(_name("31TCJ", T0), source="s")
    job = db.enqueue_job(p.id, JobMode.INIT)
    db.record_composite("31TCJ", T0, "/c/1.nc", job.id)
    db.record_composite("31TCJ", T0 + timedelta(days=5), "/c/2.nc")
    db.record_composite("31TCJ", T0 + timedelta(days=5), "/c/2b.nc")  # replaced, not duplicated
    last = db.latest_composite("31TCJ")
    assert last is not None and last.path == "/c/2b.nc"
    before = db.latest_composite("31TCJ", before=T0 + timedelta(days=5))
    assert before is not None and before.path == "/c/1.nc"
    assert db.latest_composite("33UWP") is None

    item = db.record_published(
        "L2A_X", "catalog/x.json", collection="c", checksum="1220ab", product_id=p.id
    )
    db.record_published(
        "L2A_X", "catalog/x.json", collection="c", checksum="1220cd", product_id=p.id
    )
    db.record_download("L2A_X", user="alice", nbytes=100, asset="sre_red")
    db.record_download("L2A_X", user="alice", nbytes=50)
    dl = db.record_download("L2A_X", user="bob", nbytes=7, client="127.0.0.1")
    assert dl.product_id == p.id == item.product_id
    assert db.download_counts() == [("L2A_X", "alice", 2, 150), ("L2A_X", "bob", 1, 7)]


_WORKER = textwrap.dedent(
    """
    import json, os, sys, time
    from l2a.production.db import Database
    from l2a.production.models import JobState
    db = Database(sys.argv[1])
    worker = sys.argv[2]
    # start together: imports take a while on a loaded machine
    open(os.path.join(sys.argv[3], worker + ".ready"), "w").close()
    while not os.path.exists(os.path.join(sys.argv[3], "go")):
        time.sleep(0.005)
    claimed = []
    while True:
        job = db.claim_next_job(worker)
        if job is None:
            left = [j for j in db.jobs() if j.state in (JobState.QUEUED, JobState.RUNNING)]
            if not left:
                break
            time.sleep(0.01)
            continue
        claimed.append(job.id)
        time.sleep(0.02)  # hold the job a moment, as real work does
        db.finish_job(job.id)
    print(json.dumps(claimed))
    """
)


def test_two_processes_never_claim_the_same_job(db: Database, db_url: str, tmp_path: Path) -> None:
    tiles = [f"3{i}TCJ" for i in range(1, 9)]
    for tile in tiles:
        for d in range(4):
            p, _ = db.register_product(_name(tile, T0 + timedelta(days=5 * d)), source="s")
            db.enqueue_job(p.id)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, db_url, f"w{i}", str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    results = []
    try:
        deadline = time.monotonic() + 120
        while not all((tmp_path / f"w{i}.ready").exists() for i in range(2)):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(proc.poll() is None for proc in procs), "a worker died at start"
            time.sleep(0.01)
        (tmp_path / "go").touch()
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            results.append((proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    outs = []
    for code, out, err in results:
        assert code == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    a, b = (set(o) for o in outs)
    jobs = db.jobs()
    assert not a & b, "a job was claimed twice"
    assert a | b == {j.id for j in jobs}
    assert a and b, "both workers should have had work"
    assert all(j.state == JobState.DONE and j.attempts == 1 for j in jobs)
    # dates of one tile ran one after the other, in order
    for tile in tiles:
        series = [j for j in jobs if j.tile == tile]
        for prev, nxt in itertools.pairwise(series):
            assert prev.sensing_time < nxt.sensing_time
            assert prev.finished_at is not None and nxt.started_at is not None
            assert prev.finished_at <= nxt.started_at


def test_concurrent_upgrades_of_a_fresh_database(db_url: str) -> None:
    """Several runners starting at once on an empty database: one migrates, none fails."""
    code = "import sys; from l2a.production.db import Database; Database(sys.argv[1]).upgrade()"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    errors = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                errors.append(err)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert not errors, errors[0][-3000:]
    db = Database(db_url)
    assert db.current_revision() == "0002" and db.schema_differences() == []
    db.dispose()
