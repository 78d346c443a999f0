"""Transport backends: one module each, named as ``serve(backend=...)`` names it.

The registry itself (names and descriptions) lives in the core, in
`fastrapi.core.transport.BACKENDS`; a backend module is imported only when
it is asked for, so a missing optional library costs nothing until then.
"""

from fastrapi.core.server import load_backend
from fastrapi.core.transport import BACKENDS, DEFAULT_BACKEND


def describe() -> str:
    """One line per backend: its name and what it runs on."""
    return "\n".join(f"{name}: {text}" for name, text in BACKENDS.items())


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "describe", "load_backend"]
