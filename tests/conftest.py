"""Shared fixtures: one process sandbox and evaluator per test session (CPU interpreter), a
PostgreSQL server per session with a schema of its own for each test that asks for one.

Tests marked `gpu` skip without CUDA, or fail under KERNELPILOT_REQUIRE_GPU=1 (a GPU machine
whose CUDA is broken must not pass `pytest -m gpu` with everything skipped)."""
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from tools.device import detect
from tools.evaluator import EvalConfig, Evaluator
from tools.problems import load_problem
from tools.sandbox import leftovers
from tools.sandbox.contracts import Limits
from tools.sandbox.privilege import proc_status
from tools.sandbox.process import ProcessSandbox

ROOT = Path(__file__).resolve().parent.parent
PROBLEMS = ROOT / "benchmarks" / "problems"
CANDIDATES = ROOT / "benchmarks" / "candidates"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def slowdown() -> float:
    """How many times an idle machine's time the tests' wall-clock limits allow: the
    KERNELPILOT_TEST_SLOWDOWN variable if set, else the load per usable core when the run
    starts (1 to 4), so that other work on a shared machine does not turn a slow honest
    import or first call into a timeout. A hanging candidate's test waits that much longer."""
    if os.environ.get("KERNELPILOT_TEST_SLOWDOWN"):
        return float(os.environ["KERNELPILOT_TEST_SLOWDOWN"])
    return min(4.0, max(1.0, os.getloadavg()[0] / len(os.sched_getaffinity(0))))


SLOWDOWN = slowdown()
# Short limits so hangs cost seconds; the first call still has room for a slow interpreter start.
TEST_LIMITS = Limits(load_s=8 * SLOWDOWN, first_call_s=10 * SLOWDOWN, call_s=10 * SLOWDOWN, timing_s=30 * SLOWDOWN,
                     host_memory_bytes=4 * 1024**3)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.get_closest_marker("gpu") is None or torch.cuda.is_available():
        return
    if os.environ.get("KERNELPILOT_REQUIRE_GPU") == "1":
        pytest.fail("needs a CUDA GPU, and torch sees none (KERNELPILOT_REQUIRE_GPU=1)", pytrace=False)
    pytest.skip("needs a CUDA GPU")


@pytest.fixture(scope="session", autouse=True)
def session_home(tmp_path_factory):
    """The home of the session-wide sandbox and evaluator (their baseline cache): a temporary
    folder, never the user's ~/.kernelpilot. Each test gets a home of its own on top of it."""
    home = tmp_path_factory.mktemp("kernelpilot-session-home")
    previous = os.environ.get("KERNELPILOT_HOME")
    os.environ["KERNELPILOT_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("KERNELPILOT_HOME")
    else:
        os.environ["KERNELPILOT_HOME"] = previous


@pytest.fixture(autouse=True)
def kernelpilot_home(session_home, tmp_path_factory, monkeypatch):
    """A fresh home for each test: the history store, checkpoints and config.toml of the test
    (and of the CLIs it starts) are its own, so no test sees what another recorded, whatever
    the order. KERNELPILOT_DB_URL is unset: a store named in the environment is never written."""
    home = tmp_path_factory.mktemp("kernelpilot-home")
    monkeypatch.setenv("KERNELPILOT_HOME", str(home))
    monkeypatch.delenv("KERNELPILOT_DB_URL", raising=False)
    return home


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """The tiny offline model and tokenizer (policy_training/tiny.py), built once per test module."""
    from policy_training.tiny import build_tiny

    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def cpu_sandbox(session_home):
    with ProcessSandbox(None, TEST_LIMITS, warm=1) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def evaluator(cpu_sandbox):
    return Evaluator(cpu_sandbox, detect(force_cpu=True), EvalConfig(trials=5, limits=TEST_LIMITS))


@pytest.fixture(scope="session")
def softmax_problem():
    return load_problem(PROBLEMS / "04_softmax_rows.py", size="small")


def read(path: Path) -> str:
    return path.read_text()


@contextmanager
def accepting(server: socket.socket) -> Iterator[list[socket.socket]]:
    """Accept connections on a bound, listening `server` in a thread while the block runs;
    yields the list of connections made (what a contained candidate must leave empty)."""
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield accepted
    finally:
        stop.set()
        thread.join(2)
        server.close()


# ------------------------------------------------------------------ processes, read from /proc

def wait_for_candidate_file(trusted_pid: int, name: str, timeout: float = 120.0) -> Path:
    """A file a candidate wrote in its sandbox folder (a worker of the trusted process
    `trusted_pid`): the sign that it got that far. AssertionError if none appears in time."""
    pattern = f"{tempfile.gettempdir()}/{leftovers.WORKDIR_PREFIX}{trusted_pid}-*/{name}"
    deadline = time.monotonic() + timeout * SLOWDOWN
    while time.monotonic() < deadline:
        found = glob.glob(pattern)
        if found:
            return Path(found[0])
        time.sleep(0.05)
    raise AssertionError(f"no candidate wrote {name} within {timeout * SLOWDOWN:.0f} s")


def pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def proc_field(pid: int, key: str) -> str:
    """The first word of /proc/PID/status's `key` line; '' when the process is gone."""
    try:
        return proc_status(pid)[key].split()[0]
    except (OSError, KeyError, IndexError):
        return ""


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie (this machine's init may never reap an orphan)."""
    return proc_field(pid, "State") not in ("", "Z")


# ------------------------------------------------------------------ PostgreSQL

def _pg_bin() -> Path | None:
    """The folder of PostgreSQL's server programs: KERNELPILOT_TEST_PG_BIN if set, else the
    one of `initdb` on PATH, else the newest /usr/lib/postgresql/*/bin."""
    if os.environ.get("KERNELPILOT_TEST_PG_BIN") is not None:
        folder = Path(os.environ["KERNELPILOT_TEST_PG_BIN"])
        return folder if (folder / "initdb").is_file() else None
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent   # /usr/local/bin may hold links to some tools only
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_server():
    """KERNELPILOT_TEST_PG_URL if set, else a throw-away cluster on a Unix socket. Missing
    server binaries skip the tests, or fail them under KERNELPILOT_REQUIRE_POSTGRES=1 (.ci/run)."""
    if os.environ.get("KERNELPILOT_TEST_PG_URL"):
        yield os.environ["KERNELPILOT_TEST_PG_URL"]
        return
    bin_dir = _pg_bin()
    if bin_dir is None:
        reason = "no PostgreSQL server binaries here (Debian package postgresql; .ci/run installs it)"
        if os.environ.get("KERNELPILOT_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"{reason} (KERNELPILOT_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="kp-pg-"))
    as_user = []
    if os.geteuid() == 0:   # postgres refuses to run as root
        shutil.chown(folder, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data = folder / "data"
    run = lambda *args: subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120)
    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "kp")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l", str(folder / "log"),
        "-o", f"-k {folder} -c listen_addresses='' -p 5433", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", str(folder), "-p", "5433", "-U", "kp", "kp")
        yield f"postgresql+psycopg://kp@/kp?host={folder}&port=5433"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server):
    """A URL whose tables go to a fresh schema of this test's own, dropped afterwards: a test
    never sees another's tables, and never drops what it did not create (KERNELPILOT_TEST_PG_URL
    may name a database that holds other things)."""
    from sqlalchemy import create_engine, text     # here: the GPU tests' machine may lack SQLAlchemy
    from sqlalchemy.engine import make_url
    schema = f"kp_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_server)
    with admin.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    url = make_url(postgres_server)
    options = " ".join(filter(None, [url.query.get("options"), f"-csearch_path={schema}"]))
    try:
        yield url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
