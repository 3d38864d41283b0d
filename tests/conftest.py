"""Shared basics for every test folder: the sample set, a fresh workspace, a real throw-away PostgreSQL.

Other folders keep their own fixtures in their own conftest.py. Nothing here writes outside tmp paths.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from annotator.config import Settings, find_sample_data, load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Variables that would point a test at someone's real workspace or database.
_LEAKY_ENV = ("ANNOTATOR_WORKSPACE", "ANNOTATOR_DB_URL", "ANNOTATOR_CONFIG")

SAMPLE_COUNTS = {"images": 922, "lung": 783, "infection": 12}


@pytest.fixture(autouse=True)
def _no_leaky_env(monkeypatch):
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real sample set (../shared/data/cxr or $ANNOTATOR_SAMPLE_DATA); skips when absent."""
    path = find_sample_data()
    if path is None or not (path / "manifest.csv").is_file():
        pytest.skip("sample set not found: set ANNOTATOR_SAMPLE_DATA or put it at ../shared/data/cxr "
                    "(with manifest.csv)")
    return path


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Settings for a fresh, not yet initialised workspace in tmp_path (SQLite)."""
    return load_settings(workspace=tmp_path / "ws")


@pytest.fixture
def workspace(settings) -> Settings:
    """An initialised, empty workspace (migrated SQLite DB and store folders)."""
    from annotator.workspace import init_workspace

    init_workspace(settings)
    return settings


@pytest.fixture(scope="session")
def sample_workspace(tmp_path_factory, sample_data) -> Settings:
    """The whole sample set imported once per session (manifest layout). Treat as read-only: tests that
    change it use ``sample_workspace_copy``."""
    from annotator.ingest.importer import import_collection
    from annotator.workspace import init_workspace
    from db.engine import session_scope

    settings = load_settings(workspace=tmp_path_factory.mktemp("sample") / "ws")
    init_workspace(settings)
    with session_scope(settings.database_url) as session:
        summary = import_collection(session, settings, sample_data, "manifest")
    assert summary.ok, summary.failures
    return settings


@pytest.fixture
def sample_workspace_copy(sample_workspace, tmp_path) -> Settings:
    """A private copy of the imported sample workspace, free to change."""
    from db.engine import create_db_engine

    create_db_engine(sample_workspace.database_url).dispose()  # flush SQLite's WAL into the file
    dest = tmp_path / "ws"
    shutil.copytree(sample_workspace.workspace_path, dest)
    return load_settings(workspace=dest)


# -- a real PostgreSQL server -------------------------------------------------------------------------


def _pg_bin() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _PostgresServer:
    """initdb + pg_ctl in a temp dir on a free loopback port; as the `postgres` user when we are root."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.prefix: list[str] = []
        user = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as `postgres`
            import pwd

            user = pwd.getpwnam("postgres")  # KeyError: no such user
            self.prefix = ["runuser", "-u", "postgres", "--"]
        # a temp dir of its own (not pytest's tmp_path: its parents are closed to other users); removed in stop()
        self.root = Path(tempfile.mkdtemp(prefix="annotator-pg-"))
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def start(self) -> None:
        done = self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                         "-E", "UTF8", "--no-sync")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        for _attempt in range(3):  # another process may take the free port before the server binds it
            options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            done = self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o",
                             options, "-w", "-t", "30", "start")
            if done.returncode == 0:
                return
            self.port = _free_port()
        log = self.log.read_text(errors="replace")[-500:] if self.log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip()} {log}")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


def _no_postgres(reason: str):
    """Skip, saying why; with REQUIRE_POSTGRES=1 (CI) fail instead, so a broken server is never hidden."""
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a real PostgreSQL server started for this session (skips, saying why, if it cannot)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _no_postgres("PostgreSQL tests need psycopg: pip install 'psycopg[binary]'")
    bin_dir = _pg_bin()
    if bin_dir is None:
        _no_postgres("PostgreSQL tests need Debian's postgresql package (initdb, pg_ctl); "
                     "run scripts/install_system.sh")
    try:
        server = _PostgresServer(bin_dir)
    except KeyError:
        _no_postgres("running as root but there is no `postgres` user to run the server as")
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        server.stop()
        _no_postgres(f"PostgreSQL could not start: {exc}")
    try:
        yield server.url
    finally:
        from db.engine import create_db_engine

        create_db_engine.cache_clear()
        server.stop()


_db_counter = iter(range(1, 1_000_000))


def new_postgres_database(server_url: str) -> str:
    """A fresh, empty database on the session's server; returns its URL."""
    from sqlalchemy import create_engine, text

    name = f"t{os.getpid()}_{next(_db_counter)}"
    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def postgres_db_url(postgres_url) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return new_postgres_database(postgres_url)


@pytest.fixture(params=["sqlite",
                        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.integration])])
def db_url(request, tmp_path) -> str:
    """An empty database URL: a SQLite file in tmp_path, then a fresh database on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_db_url")


@pytest.fixture
def http_server():
    """``http_server(HandlerClass) -> port``: a real threaded HTTP server on 127.0.0.1, stopped after the test."""
    import threading
    from http.server import ThreadingHTTPServer

    servers = []

    def start(handler) -> int:
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def pytest_configure(config):
    config.addinivalue_line("markers", "postgres: runs against the session's real PostgreSQL server")


def _write_dicom(path, pixels, photometric="MONOCHROME2", bits_stored=None, frames=1, **elements):
    """A DX DICOM file (patient P-042, view PA unless ``elements`` say otherwise); no pixel data when
    ``pixels`` is None; ``frames`` copies of the pixels make a multi-frame file."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientID = "P-042"
    ds.ViewPosition = "PA"
    if pixels is not None:
        bits = 16 if pixels.dtype == np.uint16 else 8
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = bits
        ds.BitsStored = bits_stored or bits
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 0
        ds.PixelData = np.tile(pixels, (frames, 1)).tobytes()
        if frames > 1:
            ds.NumberOfFrames = frames
    for key, value in elements.items():
        setattr(ds, key, value)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


@pytest.fixture
def write_dicom():
    """write_dicom(path, pixels, photometric=..., bits_stored=None, frames=1, **elements) -> path."""
    return _write_dicom


def _claim_png_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming another size (CRC fixed); its pixel data stays the real one's."""
    import zlib

    ihdr = b"IHDR" + width.to_bytes(4, "big") + height.to_bytes(4, "big") + png[24:29]
    return png[:12] + ihdr + zlib.crc32(ihdr).to_bytes(4, "big") + png[33:]


@pytest.fixture
def claim_png_size():
    """claim_png_size(png_bytes, width, height): a PNG whose header lies about its size (a decompression bomb)."""
    return _claim_png_size
