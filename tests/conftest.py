"""Shared pytest set-up: two logical CPU devices so distribution can be tested."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0],
        [tf.config.LogicalDeviceConfiguration(),
         tf.config.LogicalDeviceConfiguration()])
except RuntimeError:
    pass  # Devices already initialised by an earlier import; checked below.

# CI runs every distributed test: there, fewer than 2 logical CPUs fails the
# session instead of letting those tests skip unseen.
ON_CI = os.environ.get("CI", "").lower() in ("true", "1")
TWO_DEVICE_SKIP = "needs 2 logical CPU devices"
# A test that lost a timing race after its retries skips with this reason
# off CI; on CI that skip is a failure (a race lost every time is a bug).
TIMING_RACE_SKIP = "lost a timing race"
if ON_CI and len(tf.config.list_logical_devices("CPU")) < 2:
    raise RuntimeError(
        "CI=true but TensorFlow was initialised before tests/conftest.py could "
        "split the CPU into 2 logical devices; import tensorflow only after "
        "conftest (do not pre-load it with -p or sitecustomize).")


import itertools  # noqa: E402

import pytest  # noqa: E402

_COLLECTIVE_KEY_BASES = itertools.count(start=100_000, step=100_000)


@pytest.fixture(autouse=True)
def _fresh_collective_keys():
    """Gives strategies created in each test collective keys of their own.

    MirroredStrategy objects in one process otherwise share group/instance
    keys, and a later one running different collectives aborts with
    "Collective instance N expected type ...".
    """
    tf.distribute.MirroredStrategy._collective_key_base = next(
        _COLLECTIVE_KEY_BASES)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On CI, a test skipped for want of 2 logical devices, or for a timing
    race it lost on every attempt, is a failure."""
    outcome = yield
    report = outcome.get_result()
    if ON_CI and report.skipped and any(
            reason in str(report.longrepr)
            for reason in (TWO_DEVICE_SKIP, TIMING_RACE_SKIP)):
        report.outcome = "failed"


@pytest.fixture
def two_replica_strategy():
    """A MirroredStrategy over the two logical CPU devices set up above."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    if len(devices) < 2:
        pytest.skip(f"{TWO_DEVICE_SKIP} (see tests/conftest.py)")
    return tf.distribute.MirroredStrategy(devices)
