"""The backend-neutral core: anyio and orjson only, never a transport library."""
