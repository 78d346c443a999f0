"""What an HTTP handler may return, made into a `Response`."""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from email.utils import formatdate
from typing import Any, BinaryIO
from urllib.parse import quote

from fastrapi.core import json
from fastrapi.core.transport import HeaderList, Response


def JSONResponse(data: Any, status: int = 200, headers: HeaderList = ()) -> Response:
    """``data`` as JSON (orjson), ``application/json``."""
    return Response(status, [("content-type", "application/json"), *headers], json.dumps(data))


def HTMLResponse(html: str, status: int = 200, headers: HeaderList = ()) -> Response:
    """``html``, ``text/html; charset=utf-8``."""
    return Response(status, [("content-type", "text/html; charset=utf-8"), *headers], html.encode())


def FileResponse(
    path: str | os.PathLike[str],
    media_type: str | None = None,
    filename: str | None = None,
    status: int = 200,
    headers: HeaderList = (),
) -> Response:
    """The file at ``path``, with its content-type, length, Last-Modified and ETag.

    The file is read whole into memory when this is called: fine for pages,
    scripts and images, not for large downloads (serve those with an ASGI
    server and Starlette's streaming ``FileResponse``).

    Args:
        media_type: the content-type; by default guessed from the name
            (``mimetypes``), ``application/octet-stream`` if it tells nothing.
        filename: offer the file as a download under this name
            (``Content-Disposition: attachment``).

    Raises:
        FileNotFoundError: nothing is at ``path``.
        IsADirectoryError: ``path`` is a directory, not a file
            (``app.static()`` serves the files of a directory).
    """
    with open_file(path) as file:
        info = os.fstat(file.fileno())
        body = file.read()
    return Response(status, [*file_headers(path, info, media_type, filename), *headers], body)


def open_file(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for reading; a directory raises `IsADirectoryError` saying what to use."""
    problem = (
        f"FileResponse needs a regular file, and {os.fspath(path)!r} is not one; "
        "to serve the files of a directory use app.static(path, directory)"
    )
    try:
        file = open(path, "rb")  # closed by the caller's with
    except IsADirectoryError:
        raise IsADirectoryError(problem) from None
    if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):  # a device or a pipe
        file.close()
        raise IsADirectoryError(problem)
    return file


def file_headers(
    path: str | os.PathLike[str], info: os.stat_result, media_type: str | None, filename: str | None = None
) -> list[tuple[str, str]]:
    """A file's content-type (guessed from ``path`` unless given), Last-Modified and ETag."""
    if media_type is None:
        guessed = mimetypes.guess_type(os.fspath(filename or path))[0] or "application/octet-stream"
        # Text files are taken as UTF-8, as the rest of fastrapi's text is.
        media_type = f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
    items = [
        ("content-type", media_type),
        ("last-modified", formatdate(info.st_mtime, usegmt=True)),
        ("etag", etag(info)),
    ]
    if filename is not None:
        items.append(("content-disposition", content_disposition(filename)))
    return items


def etag(info: os.stat_result) -> str:
    """A strong validator from the file's modification time and size, as nginx makes one."""
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'


def content_disposition(filename: str) -> str:
    """``attachment`` under ``filename``; a name that does not fit plainly in
    quotes also goes percent-encoded in ``filename*`` (RFC 6266 section 4.3)."""
    fallback = _UNQUOTABLE.sub("_", filename)
    if fallback == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# Not printable ASCII, or a quote or backslash: these never go between quotes
# (a CR or LF there would split the header).
_UNQUOTABLE = re.compile(r'[^\x20-\x7e]|["\\]')


def as_response(result: object) -> Response | None:
    """A handler's return value as a response; None if it is not one of the
    kinds a handler may return (`Response`, str, bytes, dict, list)."""
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response.text(200, result)
    if isinstance(result, bytes):
        return Response(200, [("content-type", "application/octet-stream")], result)
    if isinstance(result, dict | list):
        return JSONResponse(result)
    return None
