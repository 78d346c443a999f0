"""The fastrapi command, run as ``python -m fastrapi`` on an app module written to tmp_path.

Servers listen on 127.0.0.1 and are reached with the websockets library's
own client. Every process is stopped in a ``finally``; every wait is a hang
guard of a few `UNIT` seconds, never a timing assertion.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import pytest
from websockets.sync.client import connect

import fastrapi
from fastrapi import FastrAPI
from fastrapi.cli import CommandError, ImportString, import_app, main
from fastrapi.core.transport import BACKENDS, DEFAULT_BACKEND

UNIT = 10.0  # seconds; a hang guard for one step (a start, a reply, a stop)
ROOT = Path(__file__).resolve().parent.parent
SERVING = re.compile(r"serving on http://127\.0\.0\.1:(\d+) \(backend (\w+)\)")

APP_SOURCE = """\
from fastrapi import FastrAPI, WebSocket

app = FastrAPI()
number = 42


def create() -> FastrAPI:
    return app


def create_nothing() -> None:
    return None


class Holder:
    app = app


@app.websocket("/echo")
async def echo(ws: WebSocket) -> None:
    await ws.accept()
    async for text in ws.iter_text():
        await ws.send_text(PREFIX + text)
"""


def write_app(directory: Path, prefix: str, name: str = "app") -> None:
    """An echo app whose replies start with ``prefix``, written in one step
    (a rename), so a watcher never sees half a file."""
    partial = directory / f"{name}.py.partial"
    partial.write_text(f"PREFIX = {prefix!r}\n{APP_SOURCE}")
    partial.replace(directory / f"{name}.py")


def cli_env(**changes: str | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "FASTRAPI_BACKEND"}
    # No .pyc: an edit that keeps a file's size within one second would
    # otherwise be read from the stale cache by the restarted server.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A command that ends by itself (an error, a listing)."""
    return subprocess.run(
        [sys.executable, "-m", "fastrapi", *args],
        cwd=cwd,
        env=env or cli_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=3 * UNIT,
    )


class Cli:
    """The fastrapi command serving in its own process group, its output read line by line."""

    def __init__(self, cwd: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fastrapi", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.pgid = self.process.pid
        self.lines: list[str] = []
        self._unread: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._unread.put(line)
        self._unread.put(None)  # end of output: every process of the group closed it

    def wait_for(self, text: str) -> str:
        """The next line that contains ``text``."""
        deadline = time.monotonic() + 3 * UNIT
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._unread.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                self._unread.put(None)
                break
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} in:\n{self.output()}")

    def serving_port(self) -> int:
        found = SERVING.search(self.wait_for("serving on"))
        assert found is not None
        return int(found[1])

    def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=3 * UNIT)

    def output(self) -> str:
        """Every line so far (all of it once the process group has ended)."""
        while True:
            try:
                line = self._unread.get_nowait()
            except queue.Empty:
                break
            if line is None:
                self._unread.put(None)
                break
            self.lines.append(line)
        return "".join(self.lines)

    def close(self) -> None:
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=UNIT)
        self._reader.join(timeout=UNIT)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def serving(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Cli]:
    cli = Cli(cwd, args, env or cli_env())
    try:
        yield cli
    finally:
        cli.close()


def echo(port: int, text: str) -> str:
    with connect(f"ws://127.0.0.1:{port}/echo", proxy=None, open_timeout=UNIT, close_timeout=UNIT) as ws:
        ws.send(text)
        reply = ws.recv(timeout=UNIT)
    assert isinstance(reply, str)
    return reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def live_processes(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that still run (zombies waiting for a reaper do not)."""
    if not Path("/proc/self/stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


def wait_until_gone(pgid: int) -> list[int]:
    """The group's processes still running after a bounded wait (none, if all went)."""
    deadline = time.monotonic() + UNIT
    while (alive := live_processes(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def hide_libraries(directory: Path, *names: str) -> str:
    """A PYTHONPATH entry under which importing each of ``names`` fails as if it were not installed."""
    for name in names:
        package = directory / name
        package.mkdir(parents=True)
        message = f"No module named {name!r}"
        (package / "__init__.py").write_text(f"raise ModuleNotFoundError({message!r}, name={name!r})\n")
    return str(directory)


# -- serving --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "stop"),
    [("wsproto", signal.SIGINT), ("websockets", signal.SIGTERM), ("aiohttp", signal.SIGINT)],
)
def test_run_serves_the_app_until_a_signal_then_exits_0(
    tmp_path: Path, backend: str, stop: signal.Signals
) -> None:
    write_app(tmp_path, "echo: ")
    with serving(tmp_path, "run", "app:app", "--port", "0", "--backend", backend) as cli:
        found = SERVING.search(cli.wait_for("serving on"))
        assert found is not None
        assert found[2] == backend
        assert echo(int(found[1]), "hello") == "echo: hello"
        assert cli.stop(stop) == 0
        assert "fastrapi stopped" in cli.output()


def test_the_backend_defaults_to_the_environment_variable(tmp_path: Path) -> None:
    write_app(tmp_path, "echo: ")
    with serving(tmp_path, "run", "app:app", "--port", "0", env=cli_env(FASTRAPI_BACKEND="wsproto")) as cli:
        line = cli.wait_for("serving on")
        assert "(backend wsproto)" in line
        assert cli.stop(signal.SIGTERM) == 0


def test_the_default_host_is_loopback_and_the_app_may_be_nested_or_made_by_a_factory(tmp_path: Path) -> None:
    package = tmp_path / "project"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_app(package, "factory: ", name="main")
    with serving(tmp_path, "run", "project.main:create()", "--port", "0") as cli:
        port = cli.serving_port()
        assert echo(port, "hi") == "factory: hi"
        assert cli.stop(signal.SIGINT) == 0


def test_log_level_warning_hides_the_info_lines(tmp_path: Path) -> None:
    write_app(tmp_path, "echo: ")
    port = free_port()
    with serving(tmp_path, "run", "app:app", "--port", str(port), "--log-level", "warning") as cli:
        # Nothing announces the start at this level: try until it answers.
        deadline = time.monotonic() + 3 * UNIT
        while True:
            try:
                reply = echo(port, "quiet")
                break
            except OSError:
                assert time.monotonic() < deadline, cli.output()
                assert cli.process.poll() is None, cli.output()
                time.sleep(0.05)
        assert reply == "echo: quiet"
        assert cli.stop(signal.SIGINT) == 0
        assert "INFO" not in cli.output()


def test_reload_restarts_the_server_with_the_changed_code(tmp_path: Path) -> None:
    write_app(tmp_path, "first: ")
    port = free_port()
    with serving(tmp_path, "run", "app:app", "--port", str(port), "--reload") as cli:
        cli.wait_for(f"watching {os.path.realpath(tmp_path)} for changes")
        assert cli.serving_port() == port
        assert echo(port, "hi") == "first: hi"

        write_app(tmp_path, "second, after the edit: ")
        cli.wait_for("app.py changed; restarting")
        assert cli.serving_port() == port  # the restarted server, on the same port
        assert echo(port, "hi") == "second, after the edit: hi"

        assert cli.stop(signal.SIGINT) == 0
        assert wait_until_gone(cli.pgid) == []
        assert "Traceback" not in cli.output()


def test_reload_keeps_watching_after_the_changed_code_fails_to_import(tmp_path: Path) -> None:
    write_app(tmp_path, "first: ")
    with serving(tmp_path, "run", "app:app", "--port", "0", "--reload") as cli:
        cli.serving_port()
        broken = tmp_path / "app.py.partial"
        broken.write_text("import nosuchdependency\n")
        broken.replace(tmp_path / "app.py")
        cli.wait_for("fastrapi: error: importing module 'app' raised ModuleNotFoundError")

        write_app(tmp_path, "fixed: ")
        assert echo(cli.serving_port(), "hi") == "fixed: hi"
        assert cli.stop(signal.SIGTERM) == 0
        assert wait_until_gone(cli.pgid) == []
        assert "Traceback" not in cli.output()


# -- errors ---------------------------------------------------------------------


def assert_one_line_error(result: subprocess.CompletedProcess[str], status: int, message: str) -> None:
    assert result.returncode == status, result.stderr
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("arguments", "env", "status", "message"),
    [
        (
            ["nosuchmodule:app"],
            {},
            1,
            "fastrapi: error: could not import module 'nosuchmodule': no module named 'nosuchmodule' "
            "in the current directory ({cwd}) or on sys.path",
        ),
        (["app:missing"], {}, 1, "fastrapi: error: module 'app' has no attribute 'missing'"),
        (["app:Holder.missing"], {}, 1, "fastrapi: error: object 'app.Holder' has no attribute 'missing'"),
        (
            ["app:number"],
            {},
            1,
            "fastrapi: error: 'app:number' is an object of type int, not a FastrAPI app",
        ),
        (
            ["app:create"],
            {},
            1,
            "fastrapi: error: 'app:create' is an object of type function, not a FastrAPI app; "
            "if it makes the app, write 'app:create()'",
        ),
        (
            ["app:create_nothing()"],
            {},
            1,
            "fastrapi: error: 'app:create_nothing()' returned an object of type NoneType, not a FastrAPI app",
        ),
        (
            ["app"],
            {},
            2,
            "fastrapi: error: 'app' is not an import string: write module:attribute, e.g. main:app",
        ),
        (
            ["app:app", "--backend", "nosuch"],
            {},
            2,
            "fastrapi: error: unknown backend 'nosuch'; "
            "available backends: 'wsproto', 'websockets', 'aiohttp'",
        ),
        (
            ["app:app"],
            {"FASTRAPI_BACKEND": "nosuch"},
            2,
            "fastrapi: error: FASTRAPI_BACKEND: unknown backend 'nosuch'; "
            "available backends: 'wsproto', 'websockets', 'aiohttp'",
        ),
        (
            ["app:app", "--port", "70000"],
            {},
            2,
            "fastrapi run: error: argument --port: invalid port '70000': give a number from 0 to 65535 "
            "(see 'fastrapi run --help')",
        ),
        (
            ["app:app", "--log-level", "loud"],
            {},
            2,
            "fastrapi run: error: argument --log-level: invalid choice: 'loud' "
            "(choose from 'critical', 'error', 'warning', 'info', 'debug') (see 'fastrapi run --help')",
        ),
        (["app:app", "--reload-dir", "."], {}, 2, "fastrapi: error: --reload-dir needs --reload"),
        (
            ["app:app", "--reload", "--reload-dir", "nowhere"],
            {},
            2,
            "fastrapi: error: --reload-dir 'nowhere' is not a directory",
        ),
        (
            ["app:app", "--workers", "0"],
            {},
            2,
            "fastrapi run: error: argument --workers: invalid worker count '0': give a number of 1 or more "
            "(see 'fastrapi run --help')",
        ),
        (
            ["app:app", "--workers", "many"],
            {},
            2,
            "fastrapi run: error: argument --workers: invalid worker count 'many': "
            "give a number of 1 or more (see 'fastrapi run --help')",
        ),
        (
            ["app:app", "--workers", "2", "--reload"],
            {},
            2,
            "fastrapi: error: --reload and --workers do not go together: --reload restarts one server "
            "process; drop --workers while developing",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_each_error_is_one_line_and_an_exit_status(
    tmp_path: Path, arguments: list[str], env: dict[str, str], status: int, message: str
) -> None:
    write_app(tmp_path, "")
    result = run_cli(tmp_path, "run", *arguments, env=cli_env(**env))
    assert_one_line_error(result, status, message.format(cwd=os.path.realpath(tmp_path)))


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("backend", list(BACKENDS))
def test_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path, backend: str, workers: str) -> None:
    write_app(tmp_path, "")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(
            tmp_path, "run", "app:app", "--port", str(port), "--backend", backend, "--workers", workers
        )
    assert_one_line_error(
        result,
        1,
        f"fastrapi: error: cannot listen on 127.0.0.1:{port}: address already in use "
        "(another server is listening there; choose another --port)",
    )


def test_a_missing_library_says_what_to_install(tmp_path: Path) -> None:
    write_app(tmp_path, "")
    env = cli_env(PYTHONPATH=hide_libraries(tmp_path / "hidden", "websockets", "watchfiles"))
    assert_one_line_error(
        run_cli(tmp_path, "run", "app:app", "--backend", "websockets", env=env),
        1,
        "fastrapi: error: backend 'websockets' needs the 'websockets' library, which is not installed; "
        "install it with: pip install 'fastrapi[websockets]'",
    )
    assert_one_line_error(
        run_cli(tmp_path, "run", "app:app", "--reload", env=env),
        1,
        "fastrapi: error: --reload needs the watchfiles library, which is not installed; "
        "install it with: pip install 'fastrapi[reload]'",
    )


def test_an_error_inside_the_module_shows_its_message_and_the_users_lines_only(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import os\nimport nosuchdependency\n")
    (tmp_path / "typo.py").write_text("def handler(:\n    pass\n")
    cwd = os.path.realpath(tmp_path)

    broken = run_cli(tmp_path, "run", "broken:app")
    assert broken.returncode == 1
    assert broken.stderr.splitlines() == [
        "fastrapi: error: importing module 'broken' raised ModuleNotFoundError: "
        "No module named 'nosuchdependency'",
        f'  File "{cwd}/broken.py", line 2, in <module>',
        "    import nosuchdependency",
    ]

    typo = run_cli(tmp_path, "run", "typo:app")
    assert typo.returncode == 1
    first, location, *_ = typo.stderr.splitlines()
    assert (
        first
        == "fastrapi: error: importing module 'typo' raised SyntaxError: invalid syntax (typo.py, line 1)"
    )
    assert location == f'  File "{cwd}/typo.py", line 1'
    assert "Traceback" not in typo.stderr


# -- backends, help, version --------------------------------------------------------


def test_backends_lists_each_with_its_version_and_marks_the_default(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "backends")
    assert result.returncode == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert list(rows) == list(BACKENDS)
    for name, row in rows.items():
        assert row.split()[1:3] == [name, version(name)]
    assert [name for name, row in rows.items() if row.endswith("(default)")] == [DEFAULT_BACKEND]


def test_backends_says_what_to_install_and_which_default_the_environment_chose(tmp_path: Path) -> None:
    env = cli_env(FASTRAPI_BACKEND="wsproto", PYTHONPATH=hide_libraries(tmp_path / "hidden", "websockets"))
    result = run_cli(tmp_path, "backends", env=env)
    assert result.returncode == 0
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert (
        rows["websockets"].split(None, 1)[1]
        == "not installed: needs websockets; pip install 'fastrapi[websockets]'"
    )
    assert rows["wsproto"].endswith("(default, from FASTRAPI_BACKEND)")
    assert "(default" not in rows[DEFAULT_BACKEND]


def test_version_is_the_packages(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--version")
    assert (result.returncode, result.stdout) == (0, f"fastrapi {fastrapi.__version__}\n")


def test_help_lists_the_commands_and_every_run_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as top:
        main(["--help"])
    assert top.value.code == 0
    assert re.search(r"run\s+serve an app\n\s+backends\s+list the backends", capsys.readouterr().out)

    with pytest.raises(SystemExit) as run:
        main(["run", "--help"])
    assert run.value.code == 0
    options = set(re.findall(r"(--[a-z-]+)", capsys.readouterr().out))
    assert options == {
        "--help",
        "--host",
        "--port",
        "--backend",
        "--log-level",
        "--reload",
        "--reload-dir",
        "--no-access-log",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--workers",
    }


def test_no_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.startswith("usage: fastrapi")


def test_the_console_script_is_the_same_main() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"fastrapi": "fastrapi.cli:main"}


# -- import strings, in this process -----------------------------------------------


@pytest.fixture
def app_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """tmp_path as the current directory; the modules imported from it are forgotten afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_import_strings_name_nested_attributes_and_factories(app_directory: Path) -> None:
    package = app_directory / "cli_project"
    (package / "web").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "web" / "__init__.py").write_text("")
    write_app(package / "web", "", name="main")

    app = import_app(ImportString.parse("cli_project.web.main:app"))
    assert isinstance(app, FastrAPI)
    assert import_app(ImportString.parse("cli_project.web.main:Holder.app")) is app
    assert import_app(ImportString.parse("cli_project.web.main:create()")) is app
    assert sys.path[0] == str(app_directory)


@pytest.mark.parametrize(
    "text", ["app", "app:", ":app", "app:a..b", "app:app()()", "my-app:app", "app:app(1)"]
)
def test_a_malformed_import_string_is_a_usage_error(text: str) -> None:
    with pytest.raises(CommandError) as error:
        ImportString.parse(text)
    assert error.value.exit_code == 2
    assert str(error.value) == f"{text!r} is not an import string: write module:attribute, e.g. main:app"


def test_a_factory_that_raises_shows_its_own_lines(app_directory: Path) -> None:
    (app_directory / "cli_failing_factory.py").write_text(
        "def create():\n    raise ValueError('no settings')\n"
    )
    with pytest.raises(CommandError) as error:
        import_app(ImportString.parse("cli_failing_factory:create()"))
    assert str(error.value) == "calling 'cli_failing_factory:create()' raised ValueError: no settings"
    assert [line.split(",")[1:] for line in error.value.details] == [
        [" line 2", " in create\n    raise ValueError('no settings')\n"]
    ]


@pytest.mark.parametrize("flags", [(), ("--no-access-log",)], ids=["default", "no-access-log"])
def test_no_access_log_drops_the_lines_per_connection_only(tmp_path: Path, flags: tuple[str, ...]) -> None:
    write_app(tmp_path, "echo: ")
    with serving(tmp_path, "run", "app:app", "--port", "0", *flags) as cli:
        port = cli.serving_port()
        assert echo(port, "hi") == "echo: hi"
        assert cli.stop(signal.SIGINT) == 0
    output = cli.output()
    assert "serving on" in output
    assert ('"WebSocket /echo" 101 ' in output) is not bool(flags), output
