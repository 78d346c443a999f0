"""FileResponse and app.static(): types, validators, 304, 404, and no way out of the directory."""

from __future__ import annotations

import os
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import pytest

from fastrapi import FastrAPI, FileResponse, Response, RouteError
from fastrapi.testing import TestClient

CSS = b"body { color: red }\n"


@pytest.fixture
def public(tmp_path: Path) -> Path:
    """A directory to serve, beside a secret that must never be served."""
    root = tmp_path / "public"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_bytes(CSS)
    (root / "index.html").write_text("<h1>hi</h1>")
    (root / "data.json").write_text("[1]")
    (root / "blob.unknownext").write_bytes(b"\x00\x01")
    (root / "a%2fb").mkdir()
    (tmp_path / "secret.txt").write_text("the secret")
    (root / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (root / "inside.css").symlink_to(root / "css" / "site.css")
    return root


def static_app(root: Path) -> FastrAPI:
    app = FastrAPI()
    app.static("/static", root)

    @app.get("/download")
    async def download() -> Response:
        return FileResponse(root / "data.json", filename="naïve.json")

    return app


def test_file_response_has_type_length_last_modified_and_etag(public: Path) -> None:
    path = public / "css" / "site.css"
    info = path.stat()
    response = FileResponse(path)
    headers = dict(response.wire_headers())
    assert response.body == CSS
    assert headers["content-type"] == "text/css; charset=utf-8"
    assert headers["content-length"] == str(len(CSS))
    assert headers["last-modified"] == formatdate(info.st_mtime, usegmt=True)
    assert headers["etag"].startswith('"') and headers["etag"].endswith('"')
    assert "content-disposition" not in headers
    unknown = dict(FileResponse(public / "blob.unknownext").headers)
    assert unknown["content-type"] == "application/octet-stream"
    assert dict(FileResponse(path, media_type="text/x-mine").headers)["content-type"] == "text/x-mine"


def test_the_etag_changes_with_the_file(public: Path) -> None:
    path = public / "index.html"
    before = dict(FileResponse(path).headers)["etag"]
    path.write_text("<h1>changed, and longer</h1>")
    assert dict(FileResponse(path).headers)["etag"] != before


def test_file_response_offers_a_download_under_filename(public: Path) -> None:
    with TestClient(static_app(public)) as client:
        answer = client.get("/download")
    assert answer.json() == [1]
    assert answer.headers["content-type"] == "application/json"  # from the file name, not the download name
    assert answer.headers["content-disposition"] == (
        "attachment; filename=\"na_ve.json\"; filename*=UTF-8''na%C3%AFve.json"
    )


def test_file_response_of_a_directory_says_what_to_use(public: Path) -> None:
    with pytest.raises(IsADirectoryError, match=r"app\.static"):
        FileResponse(public / "css")
    with pytest.raises(FileNotFoundError):
        FileResponse(public / "missing.txt")


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/css/site.css", "text/css; charset=utf-8"),
        ("/static/index.html", "text/html; charset=utf-8"),
        ("/static/data.json", "application/json"),
        ("/static/inside.css", "text/css; charset=utf-8"),  # a symlink that stays inside
    ],
)
def test_static_serves_files_with_their_types(public: Path, path: str, content_type: str) -> None:
    with TestClient(static_app(public)) as client:
        answer = client.get(path)
        head = client.head(path)
    expected = (public / path.removeprefix("/static/")).read_bytes()
    assert (answer.status_code, answer.content) == (200, expected)
    assert answer.headers["content-type"] == content_type
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == str(len(expected))
    assert head.headers["etag"] == answer.headers["etag"]


def test_a_current_copy_gets_304_and_a_stale_one_the_file(public: Path) -> None:
    with TestClient(static_app(public)) as client:
        first = client.get("/static/css/site.css")
        etag, modified = first.headers["etag"], first.headers["last-modified"]
        for headers in (
            {"if-none-match": etag},
            {"if-none-match": f'"other", W/{etag}'},  # weak comparison, in a list
            {"if-none-match": "*"},
            {"if-modified-since": modified},
            {"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"},
        ):
            cached = client.get("/static/css/site.css", headers=headers)
            assert (cached.status_code, cached.content) == (304, b""), headers
            assert cached.headers["etag"] == etag
            assert "content-length" not in cached.headers
        earlier = formatdate(parsedate_to_datetime(modified).timestamp() - 60, usegmt=True)
        for headers in (
            {"if-none-match": '"other"'},
            {"if-none-match": '"other"', "if-modified-since": modified},  # If-None-Match decides
            {"if-modified-since": earlier},
            {"if-modified-since": "not a date"},
        ):
            fresh = client.get("/static/css/site.css", headers=headers)
            assert (fresh.status_code, fresh.content) == (200, CSS), headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/missing.txt",
        "/static/css",
        "/static/css/",
        "/static/",
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2f" + "%2f".join(str(Path.cwd()).strip("/").split("/")) + "%2fpyproject.toml",
        "/static//etc/hostname",
        "/static/..%5csecret.txt",
        "/static/css%5c..%5c..%5csecret.txt",
        "/static/index.html%00.css",
        "/static/./index.html",
        "/static/leak.txt",  # a symlink inside that points outside
        "/static/a%2fb",  # a directory, however its name is spelled
    ],
)
def test_static_answers_404_to_anything_but_a_file_inside(public: Path, path: str) -> None:
    with TestClient(static_app(public)) as client:
        answer = client.get(path)
    assert answer.status_code == 404, path
    assert b"secret" not in answer.content


def test_static_answers_get_and_head_only(public: Path) -> None:
    with TestClient(static_app(public)) as client:
        answer = client.post("/static/index.html", content=b"x")
    assert (answer.status_code, answer.headers["allow"]) == (405, "GET, HEAD")


def test_static_refuses_a_directory_that_is_not_one_and_a_path_with_parameters(public: Path) -> None:
    app = FastrAPI()
    with pytest.raises(NotADirectoryError, match="needs a directory"):
        app.static("/static", public / "missing")
    with pytest.raises(NotADirectoryError):
        app.static("/static", public / "index.html")
    for path in ("static", "/files/{name}"):
        with pytest.raises(RouteError, match="plain path"):
            app.static(path, public)
    assert os.path.isdir(public)  # nothing above touched it
