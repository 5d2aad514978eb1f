"""A private PostgreSQL cluster on 127.0.0.1 for tests (`initdb` + `pg_ctl` as `postgres`)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Tried in order when no `initdb` is on PATH (Debian keeps the binaries per major version).
BIN_GLOB = "/usr/lib/postgresql/*/bin"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL binaries or the `postgres` user are missing on this machine."""


def find_bin_dir() -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres` (newest version first)."""
    on_path = shutil.which("initdb")
    if on_path:
        # Debian links only some binaries onto PATH; the rest sit next to the real initdb.
        return Path(on_path).resolve().parent
    candidates = sorted(glob.glob(BIN_GLOB), key=_major_version, reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    raise PostgresUnavailable(f"no initdb/pg_ctl found on PATH or under {BIN_GLOB}")


def _major_version(path: str) -> int:
    try:
        return int(Path(path).parent.name.split(".")[0])
    except ValueError:
        return 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    """One running cluster: where it lives and how to reach it."""

    bin_dir: Path
    root: Path
    port: int
    user: str = "postgres"
    database: str = "rlgpt"
    start_seconds: float = 0.0

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def url(self) -> str:
        """A `postgresql://` URL for psycopg and the checkpoint savers."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}?sslmode=disable"

    def url_for(self, database: str) -> str:
        """The URL of another database of this cluster."""
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}?sslmode=disable"

    def create_database(self, name: str) -> str:
        """Create a database (e.g. one per test) and return its URL."""
        self._as_postgres(
            [
                str(self.bin_dir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                self.user,
                name,
            ]
        )
        return self.url_for(name)

    def restart(self, timeout: float = 60.0) -> None:
        """Stop the server (fast: open connections are cut) and start it again."""
        pg_ctl = str(self.bin_dir / "pg_ctl")
        # The log file keeps the new server off this call's pipes (or the call never ends);
        # the start options come back from postmaster.opts.
        log = str(self.root / "server.log")
        self._as_postgres(
            [pg_ctl, "-D", str(self.data_dir), "-l", log, "-m", "fast", "-w", "restart"], timeout
        )
        _wait_ready(self, timeout)

    def _as_postgres(self, args: list[str], timeout: float = 60.0) -> str:
        return _run_as_postgres(args, timeout)


def _run_as_postgres(args: list[str], timeout: float = 60.0) -> str:
    # initdb refuses to run as root; the cluster belongs to the `postgres` system user.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    proc = subprocess.run(
        [*prefix, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd="/",
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def _chown_to_postgres(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    try:
        entry = pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresUnavailable("there is no `postgres` system user") from exc
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _wait_ready(cluster: PostgresCluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", cluster.port), timeout=0.5):
                pass
            _run_as_postgres(
                [
                    str(cluster.bin_dir / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(cluster.port),
                    "-U",
                    cluster.user,
                ],
                timeout=10,
            )
            return
        except (OSError, RuntimeError):
            time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL on port {cluster.port} did not become ready in {timeout}s")


def _stop(cluster: PostgresCluster) -> None:
    with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
        pg_ctl = str(cluster.bin_dir / "pg_ctl")
        _run_as_postgres([pg_ctl, "-D", str(cluster.data_dir), "-m", "fast", "-w", "stop"], 60)
    pid_file = cluster.data_dir / "postmaster.pid"
    if pid_file.exists():
        # A server that ignored the fast stop still must not outlive the tests.
        with contextlib.suppress(ValueError, OSError, ProcessLookupError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 9)


@contextlib.contextmanager
def running_postgres(timeout: float = 60.0) -> Iterator[PostgresCluster]:
    """Start a throwaway cluster (trust auth, 127.0.0.1 only, free port), stop and delete it.

    Yields:
        The running cluster with a `rlgpt` database created.

    Raises:
        PostgresUnavailable: When the binaries or the `postgres` user are missing.
    """
    bin_dir = find_bin_dir()
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="rlgpt-pg-"))
    _chown_to_postgres(root)
    cluster = PostgresCluster(bin_dir=bin_dir, root=root, port=free_port())
    try:
        _run_as_postgres(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                cluster.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            timeout=120,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -p {cluster.port} "
            f"-c unix_socket_directories={root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=50"
        )
        _run_as_postgres(
            [
                str(bin_dir / "pg_ctl"),
                "-D",
                str(cluster.data_dir),
                "-l",
                str(root / "server.log"),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )
        try:
            _wait_ready(cluster, timeout)
            cluster.create_database(cluster.database)
            cluster.start_seconds = time.monotonic() - started
            yield cluster
        finally:
            _stop(cluster)
    finally:
        shutil.rmtree(root, ignore_errors=True)
