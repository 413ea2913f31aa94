"""Fixtures for the network-namespace tests: the espgate binary and a
topology that is always torn down."""

import os
import pathlib
import random
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from topology import Topology, prefix, run_seed  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    """Each test's nodes take their one-process-per-node locks in a
    directory of its own: runs of the suite side by side never refuse each
    other's nodes (which share names)."""
    path = tmp_path / "locks"
    monkeypatch.setenv("ESPGATE_LOCK_DIR", str(path))
    return path


@pytest.fixture(autouse=True)
def state_dir(tmp_path, monkeypatch):
    """Each test's nodes keep their state (their SAs' high-water marks)
    in a directory of their own: a test starts from nothing, however often
    the suite ran, and never writes /var/lib/espgate."""
    path = tmp_path / "state"
    monkeypatch.setenv("ESPGATE_STATE_DIR", str(path))
    return path


@pytest.fixture
def espgate():
    path = os.environ.get("ESPGATE", str(REPO / "target" / "debug" / "espgate"))
    if not os.path.exists(path):
        pytest.fail(f"espgate binary not found at {path}: run `cargo build -p espgate` first")
    return path


@pytest.fixture
def release_espgate():
    """The binary the container image ships (scripts/build --release):
    $ESPGATE_RELEASE, else target/release/espgate."""
    path = pathlib.Path(os.environ.get("ESPGATE_RELEASE", str(REPO / "target" / "release" / "espgate")))
    if not path.exists():
        pytest.fail(f"{path} is missing: run scripts/build --release (scripts/test does)")
    return str(path)


@pytest.fixture
def topo():
    if os.geteuid() != 0:
        pytest.fail("network-namespace tests need root (CI runs as root)")
    t = Topology(prefix())
    try:
        yield t
    finally:
        t.cleanup()


@pytest.fixture
def rng():
    """A random.Random for a test's random moments (kill times), seeded from
    $ESPGATE_TEST_SEED or afresh; the seed is printed, and pytest shows it
    with a failure: ESPGATE_TEST_SEED=N replays the same moments."""
    seed = run_seed()
    print(f"random moments: ESPGATE_TEST_SEED={seed}")
    return random.Random(seed)
