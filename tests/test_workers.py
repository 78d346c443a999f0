"""``serve(workers=N)`` without starting processes: the argument checks, the
groups warning, the shared port's sockets, and the supervisor's decisions.

conformance/test_workers.py runs real supervisors and workers.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from fastrapi import FastrAPI
from fastrapi.core import listeners
from fastrapi.core.broker import LocalBroker
from fastrapi.core.server import LOG_HANDLER
from fastrapi.core.supervisor import EXIT_STARTUP_FAILED, RestartPolicy, Supervisor, Worker, describe_exit
from fastrapi.core.workers import PID_FORMAT, _show_pids, _warn_if_groups_are_local, check_count

GUARD = 10.0  # seconds; a hang guard


# -- the number of workers ------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -1, True, 1.5, "2"])
def test_a_worker_count_below_1_or_not_a_whole_number_is_a_value_error(workers: Any) -> None:
    with pytest.raises(ValueError) as error:
        check_count(workers)
    assert str(error.value) == (
        f"workers={workers!r}: give the number of worker processes, 1 or more "
        "(1, the default, serves in this process)"
    )


def test_serve_checks_the_worker_count_before_anything_else() -> None:
    with pytest.raises(ValueError, match="workers=0: give the number of worker processes"):
        FastrAPI().serve(port=0, backend="nonexistent", workers=0)


def test_without_fork_more_than_one_worker_says_to_use_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "fork")
    check_count(1)
    with pytest.raises(RuntimeError) as error:
        FastrAPI().serve(port=0, workers=2)
    assert str(error.value).startswith("workers=2 forks worker processes, and os.fork does not exist on ")
    assert str(error.value).endswith("; use workers=1")


# -- groups across workers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("broker", "warned"),
    [(None, True), (LocalBroker(), True), ("redis://127.0.0.1:1/0", False)],
    ids=["default", "local broker", "redis broker"],
)
def test_workers_warn_that_groups_are_per_process_unless_the_broker_is_shared(
    caplog: pytest.LogCaptureFixture, broker: LocalBroker | str | None, warned: bool
) -> None:
    app = FastrAPI(broker=broker)
    with caplog.at_level(logging.WARNING, "fastrapi.server"):
        assert _warn_if_groups_are_local(app, 4) is warned
    expected = [
        "app.groups are per process: with 4 workers, a broadcast reaches only the members "
        "connected to the same worker; groups across workers need a shared broker, "
        'e.g. FastrAPI(broker="redis://...")'
    ]
    assert caplog.messages == (expected if warned else [])


# -- log lines ----------------------------------------------------------------------------


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("fastrapi")
    handlers = list(logger.handlers)
    yield logger
    logger.handlers = handlers


def test_every_line_says_its_process_on_fastrapis_own_handler_only(package_logger: logging.Logger) -> None:
    ours, theirs = logging.StreamHandler(), logging.StreamHandler()
    ours.set_name(LOG_HANDLER)
    theirs_format = logging.Formatter("%(message)s")
    theirs.setFormatter(theirs_format)
    package_logger.handlers = [ours, theirs]
    _show_pids()
    assert ours.formatter is not None and ours.formatter._fmt == PID_FORMAT
    record = logging.LogRecord("fastrapi.server", logging.INFO, __file__, 1, "worker ready", None, None)
    assert ours.format(record) == f"INFO fastrapi.server [{os.getpid()}]: worker ready"
    assert theirs.formatter is theirs_format


# -- the shared port ----------------------------------------------------------------------


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=GUARD):
            return True
    except ConnectionRefusedError:
        return False


@pytest.mark.skipif(not listeners.REUSE_PORT, reason="SO_REUSEPORT spreads connections on Linux only")
def test_with_reuse_port_the_supervisor_holds_the_port_and_each_worker_binds_its_own() -> None:
    shared = listeners.share_port("127.0.0.1", 0)
    try:
        assert shared.reuse_port
        port = shared.address.port
        assert port != 0 and shared.address.host == "127.0.0.1"
        assert not accepts(port)  # held, not listening: no connection waits there
        own = shared.worker_socket()
        with own:
            assert shared.held.fileno() == -1  # the worker let go of the supervisor's hold
            assert own.getsockname() == ("127.0.0.1", port)
            assert own.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            own.listen()
            assert accepts(port)
    finally:
        shared.close()


def test_without_reuse_port_every_worker_accepts_on_the_supervisors_socket() -> None:
    shared = listeners.share_port("127.0.0.1", 0, reuse_port=False)
    try:
        assert shared.worker_socket() is shared.held
        assert accepts(shared.address.port)  # listening from the start
    finally:
        shared.close()


def test_a_port_in_use_fails_in_the_supervisor() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        for reuse_port in {False, listeners.REUSE_PORT}:
            with pytest.raises(OSError) as error:
                listeners.share_port("127.0.0.1", taken.getsockname()[1], reuse_port)
            assert error.value.errno == errno.EADDRINUSE


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
def test_an_ipv6_address_is_served_on_ipv6_alone() -> None:
    try:
        shared = listeners.share_port("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with shared.held:
        assert shared.held.family == socket.AF_INET6
        assert shared.held.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        assert shared.address.host == "::1"


def test_a_name_with_several_addresses_is_served_on_the_first(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    found = [
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 0)),
        (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", 0)),
    ]
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: found)
    with caplog.at_level(logging.WARNING, "fastrapi.server"):
        shared = listeners.share_port("twice.example", 0, reuse_port=False)
    with shared.held:
        assert shared.address.host == "127.0.0.1"
    assert caplog.messages == [
        "twice.example is also 127.0.0.2; with workers, fastrapi listens on 127.0.0.1 only"
    ]


# -- the supervisor's decisions -----------------------------------------------------------------


def test_a_worker_that_served_a_while_is_replaced_at_once() -> None:
    policy = RestartPolicy(rapid=1.0, limit=3)
    assert policy.delay(lived=0.2, served=False) == 1.0
    assert policy.delay(lived=5.0, served=True) == 0.0  # and the count of rapid ends starts again
    assert [policy.delay(lived=5.0, served=False) for _ in range(3)] == [1.0, 1.0, None]


def test_workers_that_end_as_soon_as_they_start_are_given_up_on_after_the_limit() -> None:
    policy = RestartPolicy(rapid=1.0, limit=3)
    assert [policy.delay(lived=0.5, served=True) for _ in range(3)] == [1.0, 1.0, None]


@pytest.mark.parametrize(
    ("code", "words"),
    [(0, "exit status 0"), (3, "exit status 3"), (-9, "killed by SIGKILL"), (None, "status unknown")],
)
def test_how_a_worker_ended_in_words(code: int | None, words: str) -> None:
    assert describe_exit(code) == words


def test_an_unnamed_signal_is_a_number() -> None:
    unnamed = next(number for number in range(1, 256) if number not in {s.value for s in signal.Signals})
    assert describe_exit(-unnamed) == f"killed by signal {unnamed}"


def supervisor(announced: list[str] | None = None) -> Supervisor:
    """A supervisor of 2 workers that gives up after 2 rapid ends; it never forks here."""
    said = [] if announced is None else announced
    return Supervisor(
        2,
        lambda serving: 0,
        announce=lambda: said.append("announced"),
        release=lambda: None,
        stop_timeout=GUARD,
        policy=RestartPolicy(rapid=1.0, limit=2),
    )


def test_a_failed_start_up_stops_everything_and_a_crash_loop_gives_up() -> None:
    boss = supervisor()
    boss._ended(Worker(101, started=0.0, serving=True), code=-9)
    assert boss.failure is None and len(boss.starts) == 1  # replaced
    boss._ended(Worker(102, started=0.0, serving=False), code=1)
    boss._ended(Worker(103, started=0.0, serving=False), code=1)
    assert boss.failure == (
        "workers keep ending as soon as they start (2 in a row, the last: worker 103, exit status 1); "
        "giving up"
    )

    boss = supervisor()
    boss._ended(Worker(104, started=0.0), code=EXIT_STARTUP_FAILED)
    assert boss.failure == "the start-up of worker 104 failed; not serving"
    assert boss.starts == []


def test_workers_ending_during_the_stop_are_not_replaced(caplog: pytest.LogCaptureFixture) -> None:
    boss = supervisor()
    boss.stop_signal = signal.SIGINT
    with caplog.at_level(logging.WARNING, "fastrapi.server"):
        boss._ended(Worker(105, started=0.0), code=0)
        boss._ended(Worker(106, started=0.0), code=-signal.SIGINT)  # before its server took SIGINT over
        boss._ended(Worker(107, started=0.0), code=EXIT_STARTUP_FAILED)
    assert boss.starts == [] and boss.failure is None
    assert caplog.messages == ["worker 107 ended on the stop with exit status 3"]


def test_the_supervisor_wakes_up_for_a_signal_and_for_messages_of_its_workers() -> None:
    announced: list[str] = []
    boss = supervisor(announced)
    boss.workers = {201: Worker(201, started=0.0), 202: Worker(202, started=0.0)}
    before = signal.getsignal(signal.SIGTERM)
    with boss._supervising():
        os.write(boss._ready_write, b"201\n20")  # the end of a message still to come
        boss._sleep(GUARD)
        boss._read_messages()
        assert [boss.workers[201].serving, boss.workers[202].serving] == [True, False]
        assert announced == []
        os.write(boss._ready_write, b"2\n999\n")  # 999: a worker that ended meanwhile
        boss._sleep(GUARD)
        boss._read_messages()
        assert boss.workers[202].serving and announced == ["announced"]

        os.kill(os.getpid(), signal.SIGTERM)
        boss._sleep(GUARD)
        assert boss.stop_signal == signal.SIGTERM
        os.kill(os.getpid(), signal.SIGINT)  # a second signal changes nothing
        boss._sleep(GUARD)
        assert boss.stop_signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before
