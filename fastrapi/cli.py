"""The ``fastrapi`` command (also ``python -m fastrapi``).

    fastrapi run main:app --port 8000 --reload
    fastrapi run main:app --workers 4
    fastrapi backends

``run`` imports the app from an import string, as uvicorn does, and calls
`FastrAPI.serve`. Every failure the user can fix (an import string that does
not import, a port in use, a missing backend library) is one line on stderr
and a non-zero exit: 2 for a wrong command line, 1 otherwise.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from fastrapi import __version__
from fastrapi.core.app import FastrAPI
from fastrapi.core.exceptions import BackendUnavailableError, UnknownBackendError
from fastrapi.core.server import _configure_logging, load_backend
from fastrapi.core.transport import BACKENDS, DEFAULT_BACKEND

if TYPE_CHECKING:
    from watchfiles.main import FileChange

EXIT_ERROR = 1
EXIT_USAGE = 2
# What a shell reports for a program ended by Ctrl+C (128 + SIGINT).
EXIT_INTERRUPTED = 130

BACKEND_VARIABLE = "FASTRAPI_BACKEND"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
# The errors a listening socket can fail with: the address is taken, not
# ours, or not allowed; a host name that does not resolve is a gaierror.
LISTEN_ERRNOS = frozenset({errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES, errno.EAFNOSUPPORT})

logger = logging.getLogger("fastrapi.server")


class CommandError(Exception):
    """A failure the user can fix: one line on stderr, then exit with ``exit_code``.

    ``details`` are printed under that line: the frames of the user's own
    code when it is what failed.
    """

    def __init__(self, message: str, exit_code: int = EXIT_ERROR, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error here, instead of argparse's usage block.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] | None = getattr(args, "command", None)
    if command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return command(args)
    except CommandError as error:
        report(error)
        return error.exit_code
    except KeyboardInterrupt:
        # Ctrl+C before the server took over SIGINT (while importing the app, say).
        return EXIT_INTERRUPTED


def report(error: CommandError) -> None:
    print(f"fastrapi: error: {error}", file=sys.stderr)
    for line in error.details:
        print(line, end="" if line.endswith("\n") else "\n", file=sys.stderr)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="fastrapi",
        description="Serve a FastrAPI WebSocket app.",
        epilog="See 'fastrapi COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"fastrapi {__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser(
        "run",
        help="serve an app",
        description="Serve the FastrAPI app named by APP until Ctrl+C (SIGINT) or SIGTERM.",
    )
    run.add_argument(
        "app",
        metavar="APP",
        help="where the app is, as module:attribute (e.g. main:app, package.module:holder.app), "
        "or module:factory() for a function that returns it; the current directory is searched first",
    )
    # Each option of this group is a keyword of FastrAPI.serve, passed as is
    # (to the reloaded server process too): a new serve() keyword is one line here.
    serving = run.add_argument_group("server")
    serve_options = [
        serving.add_argument(
            "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
        ),
        serving.add_argument(
            "--port",
            type=port_number,
            default=8000,
            help="port to listen on, 0 for any (default: %(default)s)",
        ),
        serving.add_argument(
            "--backend",
            metavar="NAME",
            help=f"transport: {', '.join(BACKENDS)} (default: ${BACKEND_VARIABLE}, else {DEFAULT_BACKEND})",
        ),
        serving.add_argument("--ssl-certfile", dest="certfile", metavar="FILE", help="TLS certificate (PEM)"),
        serving.add_argument("--ssl-keyfile", dest="keyfile", metavar="FILE", help="TLS private key (PEM)"),
        serving.add_argument(
            "--no-access-log",
            dest="access_log",
            action="store_false",
            help="no line per connection (the fastrapi.access logger)",
        ),
        serving.add_argument(
            "--workers",
            type=worker_count,
            default=1,
            metavar="N",
            help="serve from N processes sharing the port (default: %(default)s, this process alone)",
        ),
    ]
    run.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help=f"level of the fastrapi loggers: {', '.join(LOG_LEVELS)} (default: info)",
    )
    run.add_argument(
        "--reload", action="store_true", help="restart the server when a .py file changes (needs watchfiles)"
    )
    run.add_argument(
        "--reload-dir",
        action="append",
        type=Path,
        metavar="DIR",
        help="directory to watch with --reload; repeatable (default: the current directory)",
    )
    run.set_defaults(command=run_command, serve_options=tuple(action.dest for action in serve_options))

    backends = commands.add_parser(
        "backends",
        help="list the backends",
        description="List every backend with its library's installed version, and the default.",
    )
    backends.set_defaults(command=backends_command)
    return parser


def worker_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"invalid worker count {text!r}: give a number of 1 or more")
    return count


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: give a number from 0 to 65535")
    return port


# -- run ----------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    target = ImportString.parse(args.app)
    options: dict[str, Any] = {name: getattr(args, name) for name in args.serve_options}
    options["backend"] = check_backend(args.backend)
    if args.reload_dir and not args.reload:
        raise CommandError("--reload-dir needs --reload", EXIT_USAGE)
    if args.reload and args.workers > 1:
        raise CommandError(
            "--reload and --workers do not go together: --reload restarts one server process; "
            "drop --workers while developing",
            EXIT_USAGE,
        )
    if not args.reload:
        return serve(target, options, args.log_level)
    directories = args.reload_dir or [Path.cwd()]
    for directory in directories:
        if not directory.is_dir():
            raise CommandError(f"--reload-dir {str(directory)!r} is not a directory", EXIT_USAGE)
    return serve_reloading(target, options, args.log_level, directories)


def check_backend(name: str | None) -> str:
    """The backend to serve with: ``name``, else $FASTRAPI_BACKEND, else the default."""
    source = ""
    if name is None:
        name = os.environ.get(BACKEND_VARIABLE) or DEFAULT_BACKEND
        source = f"{BACKEND_VARIABLE}: " if BACKEND_VARIABLE in os.environ else ""
    try:
        load_backend(name)
    except BackendUnavailableError as error:
        raise CommandError(f"{source}{error}") from None
    except UnknownBackendError as error:
        raise CommandError(f"{source}{error}", EXIT_USAGE) from None
    return name


def serve(target: ImportString, options: dict[str, Any], log_level: str | None) -> int:
    """Import the app and serve it until SIGINT or SIGTERM; blocking."""
    app = import_app(target)
    if log_level is not None:
        # serve() configures logging only if nothing did; configure it first
        # (the same way) so that the level set here is the one that stays.
        _configure_logging()
        logging.getLogger("fastrapi").setLevel(log_level.upper())
    try:
        app.serve(**options)
    except Exception as error:
        listen_error = find_listen_error(error)
        if listen_error is None:
            raise
        raise CommandError(
            f"cannot listen on {address(options)}: {describe_listen_error(listen_error)}"
        ) from None
    return 0


def address(options: dict[str, Any]) -> str:
    host = str(options["host"])
    return f"[{host}]:{options['port']}" if ":" in host else f"{host}:{options['port']}"


def find_listen_error(error: BaseException) -> OSError | None:
    """The OSError that kept the server from listening, if that alone is ``error``.

    It surfaces from the event loop's create_server, wrapped by the server's
    task group in an ExceptionGroup of one.
    """
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    if isinstance(error, socket.gaierror):
        return error
    if isinstance(error, OSError) and error.errno in LISTEN_ERRNOS:
        return error
    return None


def describe_listen_error(error: OSError) -> str:
    if isinstance(error, socket.gaierror):
        return f"cannot resolve the host ({error.strerror})"
    reason = os.strerror(error.errno or 0).lower()
    if error.errno == errno.EADDRINUSE:
        return f"{reason} (another server is listening there; choose another --port)"
    return reason


def serve_reloading(
    target: ImportString, options: dict[str, Any], log_level: str | None, directories: Sequence[Path]
) -> int:
    """Serve in a child process, started anew whenever a .py file under ``directories`` changes."""
    try:
        from watchfiles import PythonFilter, run_process
    except ModuleNotFoundError:
        raise CommandError(
            "--reload needs the watchfiles library, which is not installed; "
            "install it with: pip install 'fastrapi[reload]'"
        ) from None
    _configure_logging()
    level = (log_level or "info").upper()
    logging.getLogger("fastrapi").setLevel(level)
    quiet_watchfiles(level)
    logger.info(
        "watching %s for changes to .py files; the server restarts on each",
        ", ".join(str(directory) for directory in directories),
    )
    # The server takes SIGINT even when it was started with SIGINT ignored
    # (a background job of a script); so does the process that restarts it,
    # which stops on KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    # watchfiles starts the server in a fresh interpreter (a spawned process)
    # so every restart imports the changed code; on Ctrl+C or SIGTERM it
    # sends SIGINT to the server, which shuts down as it does without --reload.
    run_process(
        *directories,
        target=serve_child,
        args=(target, options, log_level),
        watch_filter=PythonFilter(),
        callback=log_changes,
    )
    return 0


def serve_child(target: ImportString, options: dict[str, Any], log_level: str | None) -> None:
    """The server process of --reload; an error ends it, and the next change starts another."""
    try:
        status = serve(target, options, log_level)
    except CommandError as error:
        report(error)
        status = error.exit_code
    except KeyboardInterrupt:
        # The stop came before the server took over SIGINT, or after it let go.
        status = 0
    if status:
        sys.exit(status)


def log_changes(changes: set[FileChange]) -> None:
    paths = sorted({os.path.relpath(path) for _, path in changes})
    logger.info("%s changed; restarting", ", ".join(paths))


class QuietStop(logging.Filter):
    """Drops watchfiles' warnings about the stops that are how --reload works:
    the Ctrl+C or SIGTERM that ends it, and a server process that had already
    exited on its own error (which it printed)."""

    EXPECTED = ("KeyboardInterrupt caught", "received signal", "process already dead")

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.EXPECTED)


def quiet_watchfiles(level: str) -> None:
    # Its other warnings (a server that ignores SIGINT gets SIGKILL) are worth
    # seeing, in our format; its INFO line per change repeats ours.
    watchfiles_logger = logging.getLogger("watchfiles")
    watchfiles_logger.setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for handler in logging.getLogger("fastrapi").handlers:
        watchfiles_logger.addHandler(handler)
    # A logger's filter sees only what is logged on that very logger, and
    # watchfiles logs everything on this one.
    logging.getLogger("watchfiles.main").addFilter(QuietStop())


# -- import strings -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ImportString:
    """``module.sub:attribute.attribute``, or ``module:factory()`` to call what it names."""

    module: str
    attributes: tuple[str, ...]
    call: bool

    @classmethod
    def parse(cls, text: str) -> ImportString:
        module, _, attribute = text.partition(":")
        call = attribute.endswith("()")
        attributes = tuple(attribute.removesuffix("()").split("."))
        if not all(part.isidentifier() for part in (*module.split("."), *attributes)):
            raise CommandError(
                f"{text!r} is not an import string: write module:attribute, e.g. main:app", EXIT_USAGE
            )
        return cls(module, attributes, call)

    def __str__(self) -> str:
        return f"{self.module}:{'.'.join(self.attributes)}{'()' if self.call else ''}"


def import_app(target: ImportString) -> FastrAPI:
    """The FastrAPI app ``target`` names, importing its module with the current directory first on sys.path.

    Raises:
        CommandError: the module is missing, or raised while it was imported
            (with the frames of the user's code as details), it has no such
            attribute, or what it names is not a FastrAPI app.
    """
    cwd = os.getcwd()
    if sys.path[:1] != [cwd]:
        sys.path.insert(0, cwd)
    try:
        found: object = importlib.import_module(target.module)
    except ModuleNotFoundError as error:
        if error.name is not None and (target.module + ".").startswith(error.name + "."):
            raise CommandError(
                f"could not import module {target.module!r}: no module named {error.name!r} "
                f"in the current directory ({cwd}) or on sys.path"
            ) from None
        raise user_code_error(f"importing module {target.module!r} raised", error) from None
    except Exception as error:
        raise user_code_error(f"importing module {target.module!r} raised", error) from None
    path = target.module
    for attribute in target.attributes:
        try:
            found = getattr(found, attribute)
        except AttributeError:
            owner = "module" if path == target.module else "object"
            raise CommandError(f"{owner} {path!r} has no attribute {attribute!r}") from None
        path = f"{path}.{attribute}"
    if target.call:
        if not callable(found):
            raise CommandError(f"{path!r} is not callable; write {str(target).removesuffix('()')!r}")
        try:
            found = found()
        except Exception as error:
            raise user_code_error(f"calling {str(target)!r} raised", error) from None
    if not isinstance(found, FastrAPI):
        made = "returned" if target.call else "is"
        message = f"{str(target)!r} {made} {describe_object(found)}, not a FastrAPI app"
        if callable(found) and not target.call:
            message += f"; if it makes the app, write '{target}()'"
        raise CommandError(message)
    return found


def describe_object(found: object) -> str:
    if isinstance(found, type):
        return f"the class {found.__qualname__}"
    return f"an object of type {type(found).__qualname__}"


def user_code_error(what: str, error: Exception) -> CommandError:
    """The one line for an exception from the user's code, and its frames of that code.

    A missing dependency, a typo or a SyntaxError is fixed in the user's
    file, so its file and line are shown (as Python would), without the
    frames of fastrapi and of the import machinery, which are the same every
    time and would bury them, and without "Traceback", since fastrapi did
    not crash.
    """
    frames = [
        frame for frame in traceback.extract_tb(error.__traceback__) if not is_machinery(frame.filename)
    ]
    details = traceback.format_list(frames)
    if isinstance(error, SyntaxError):
        # Its location is the exception itself: the file, line and caret.
        details += traceback.format_exception_only(error)[:-1]
    return CommandError(f"{what} {type(error).__name__}: {error}", details=details)


IMPORTLIB_DIRECTORY = os.path.dirname(importlib.__file__)


def is_machinery(filename: str) -> bool:
    return (
        filename == __file__
        or filename.startswith("<frozen importlib")
        or os.path.dirname(filename) == IMPORTLIB_DIRECTORY
    )


# -- backends -------------------------------------------------------------------


def backends_command(args: argparse.Namespace) -> int:
    chosen = os.environ.get(BACKEND_VARIABLE) or DEFAULT_BACKEND
    width = max(len(name) for name in BACKENDS)
    rows = [(name, backend_status(name)) for name in BACKENDS]
    status_width = max(len(status) for _, status in rows)
    for name, status in rows:
        marker = ""
        if name == chosen:
            marker = f"(default, from {BACKEND_VARIABLE})" if BACKEND_VARIABLE in os.environ else "(default)"
        print(f"{name:<{width}}  {status:<{status_width}}  {marker}".rstrip())
    if chosen not in BACKENDS:
        print(
            f"fastrapi: warning: {BACKEND_VARIABLE}={chosen!r} names no backend; 'fastrapi run' refuses it",
            file=sys.stderr,
        )
    return 0


def backend_status(name: str) -> str:
    """Its library and version, or what to install."""
    try:
        load_backend(name)
    except BackendUnavailableError as error:
        missing = getattr(error.__cause__, "name", None) or name
        return f"not installed: needs {missing}; pip install 'fastrapi[{name}]'"
    # Each backend is named after the library it adapts (the distribution's name).
    try:
        return f"{name} {version(name)}"
    except PackageNotFoundError:
        return "installed"
