"""PostgreSQL for the native stack: the system binaries (initdb as the ``postgres`` user when root), pgserver's
embedded server, or none at all (every store a SQLite file); one database per store on the server.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

from mlops.core import services
from mlops.core.config import Settings

POSTGRES_USER = "mlops"
DATABASES = {"mlflow": "mlflow", "mage": "mage", "monitoring": "monitoring"}


def system_postgres_bin() -> Path | None:
    """The newest ``/usr/lib/postgresql/<n>/bin`` (Debian, Ubuntu), else the folder of ``postgres`` on PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if candidates:
        return candidates[-1].parent
    found = shutil.which("postgres")
    return Path(found).parent if found else None


def _as_postgres_user(command: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` system user then."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def usable_by_postgres_user(folder: Path) -> bool:
    """As root, the data folder must be reachable by the ``postgres`` user (not under a 0700 home, say)."""
    if os.geteuid() != 0:
        return True
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, user.pw_uid, grp.getgrgid(user.pw_gid).gr_gid)
    return subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(folder)], check=False).returncode == 0


def choose_database(settings: Settings, run: Path) -> str:
    wanted = settings.stack.database
    if wanted in ("embedded", "sqlite"):
        return wanted
    binaries = system_postgres_bin()
    usable = binaries is not None and usable_by_postgres_user(run / "pgdata")
    if usable:
        return "postgres"
    if wanted == "postgres":
        where = (
            "no PostgreSQL binaries found" if binaries is None else f"the postgres user cannot write {run / 'pgdata'}"
        )
        raise services.ServiceError(f"stack.database is 'postgres' but {where}; use 'auto', 'embedded' or 'sqlite'")
    return "embedded"


def _initdb(binaries: Path, pgdata: Path, password: str) -> None:
    pwfile = pgdata.parent / ".pgpass-init"
    services.write_private(pwfile, password + "\n")
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(pwfile, user.pw_uid, user.pw_gid)
        command = [str(binaries / "initdb"), "-D", str(pgdata), "-U", POSTGRES_USER, f"--pwfile={pwfile}"]
        command += ["--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8"]
        result = subprocess.run(_as_postgres_user(command), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise services.ServiceError(f"initdb failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
    finally:
        pwfile.unlink(missing_ok=True)


def start_system_postgres(settings: Settings, run: Path, password: str) -> tuple[services.ManagedProcess, str]:
    binaries = system_postgres_bin()
    assert binaries is not None
    pgdata = run / "pgdata"
    if not (pgdata / "PG_VERSION").is_file():
        _initdb(binaries, pgdata, password)
    port = settings.stack.postgres_port
    # TCP on 127.0.0.1 only, no Unix socket (its path could exceed the length limit inside deep run folders)
    command = [str(binaries / "postgres"), "-D", str(pgdata), "-p", str(port)]
    command += ["-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="]
    # none of the platform's secrets: the password was set once by initdb
    log = run / "logs" / "postgres.log"
    proc = services.ManagedProcess("postgres", _as_postgres_user(command), log, inherit_secrets=False).start()
    url = f"postgresql+psycopg2://{POSTGRES_USER}:{password}@127.0.0.1:{port}/postgres"
    return proc, url


def start_embedded_postgres(run: Path) -> tuple[int, str]:
    """pgserver's PostgreSQL (it runs as a daemon of its own); returns the postmaster's pid and the URL."""
    url = services.embedded_postgres(run / "embedded-pgdata")
    pid = int((run / "embedded-pgdata" / "postmaster.pid").read_text().split()[0])
    return pid, url


def wait_postgres(url: str, proc: services.ManagedProcess | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise services.ServiceError(f"postgres exited:\n{proc.log_tail()}")
        if services.postgres_reachable(url):
            return
        time.sleep(0.5)
    raise services.ServiceError(f"PostgreSQL did not accept connections within {timeout:.0f} s")


def sqlite_urls(settings: Settings, run: Path) -> dict[str, str]:
    """All-SQLite mode serves the configured stores where they are SQLite files (what the pipelines and the
    demo wrote: ``up`` then opens MLflow and the app on their results); a store elsewhere gets a new file."""
    urls = {name: f"sqlite:///{run / name}.db" for name in DATABASES}
    for name, configured in (("mlflow", settings.tracking_uri), ("monitoring", settings.monitoring_db)):
        if configured.startswith("sqlite:///"):
            urls[name] = configured
    return urls


def database_urls(server_url: str) -> dict[str, str]:
    """One database per store on the server (created if missing)."""
    return {store_name: services.create_database(server_url, db) for store_name, db in DATABASES.items()}
