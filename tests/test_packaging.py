"""The lower bounds in pyproject.toml are the versions CI tests (.ci/oldest.txt)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# What fastrapi itself imports: the core, the backends, the reloader, typed messages and the Redis broker.
RUNTIME_LIBRARIES = {
    "anyio",
    "h11",
    "orjson",
    "wsproto",
    "websockets",
    "aiohttp",
    "watchfiles",
    "pydantic",
    "redis",
}
RUNTIME_EXTRAS = ("websockets", "aiohttp", "reload", "pydantic", "redis")


def lower_bounds() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in RUNTIME_EXTRAS:
        requirements += project["optional-dependencies"][extra]
    bounds = {}
    for requirement in requirements:
        found = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9A-Za-z.]*)", requirement)
        assert found is not None, f"{requirement!r}: give each library a plain >= lower bound"
        bounds[found[1].lower()] = found[2]
    return bounds


def pins() -> dict[str, str]:
    lines = (ROOT / ".ci" / "oldest.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line.strip() and not line.startswith("#")]
    return {name.strip().lower(): version.strip() for name, version in pairs}


def test_every_lower_bound_is_the_version_ci_tests() -> None:
    assert set(lower_bounds()) == RUNTIME_LIBRARIES
    assert lower_bounds() == pins()


def test_all_installs_every_runtime_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["all"] == [f"fastrapi[{','.join(RUNTIME_EXTRAS)}]"]
