"""A directory's files over HTTP: ``app.static("/static", directory)``.

Every request names a file below the directory and nothing else: a path
with ``..``, an empty segment (an absolute path, ``a//b``), a backslash or
a NUL is refused before the file system is asked, and what remains is
resolved (symlinks followed) and must still lie inside the directory. What
is refused, missing or not a regular file is one answer: 404.
"""

from __future__ import annotations

import os
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path

import anyio.to_thread

from fastrapi.core.request import Request
from fastrapi.core.responses import file_headers, open_file
from fastrapi.core.transport import Response

NOT_FOUND = Response.text(404, "Not Found")
_VALIDATORS = ("etag", "last-modified")  # what a 304 repeats of the 200's headers


class StaticFiles:
    """The files below ``directory``, answered with their type, ETag and
    Last-Modified, and 304 to a client whose copy is current.

    Raises:
        NotADirectoryError: ``directory`` is missing or not a directory.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        root = Path(directory)
        if not root.is_dir():
            raise NotADirectoryError(
                f"app.static() needs a directory, and {os.fspath(directory)!r} is not one; "
                "pass the folder whose files to serve (FileResponse serves a single file)"
            )
        self.root = root.resolve()

    async def serve(self, request: Request, file_path: str) -> Response:
        # Disk reads and stats block: in a worker thread, not the event loop.
        return await anyio.to_thread.run_sync(self.answer, request, file_path)

    def answer(self, request: Request, file_path: str) -> Response:
        target = self.resolve(file_path)
        if target is None:
            return NOT_FOUND
        try:
            with open_file(target) as file:
                info = os.fstat(file.fileno())
                headers = file_headers(target, info, None)
                if not_modified(request, dict(headers)):
                    return Response(304, [item for item in headers if item[0] in _VALIDATORS])
                body = file.read()
        except OSError:  # gone since, a directory, unreadable: nothing to serve
            return NOT_FOUND
        return Response(200, headers, body)

    def resolve(self, file_path: str) -> Path | None:
        """The file below the root that ``file_path`` (decoded, ``/``-separated)
        names, or None if it names anything else or nothing."""
        if not file_path or "\x00" in file_path or "\\" in file_path:
            return None
        parts = file_path.split("/")
        if any(part in ("", ".", "..") for part in parts):
            return None
        try:
            real = self.root.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, or a symlink loop
            return None
        # A symlink inside the directory may point anywhere: only its target counts.
        return real if real.is_relative_to(self.root) else None


def not_modified(request: Request, headers: dict[str, str]) -> bool:
    """Whether the client's copy is current (RFC 9110 sections 13.1.2 and 13.1.3):
    ``If-None-Match`` decides when present, else ``If-Modified-Since``."""
    tags = [tag.strip() for value in request.headers.get_all("if-none-match") for tag in value.split(",")]
    if tags:
        ours = headers["etag"].removeprefix("W/")
        return any(tag == "*" or tag.removeprefix("W/") == ours for tag in tags)
    since = request.headers.get("if-modified-since")
    if since is None:
        return False
    try:
        client_time = parsedate_to_datetime(since)
    except (TypeError, ValueError):  # not a date: ignored, as the RFC says
        return False
    if client_time.tzinfo is None:
        client_time = client_time.replace(tzinfo=UTC)
    return parsedate_to_datetime(headers["last-modified"]) <= client_time
