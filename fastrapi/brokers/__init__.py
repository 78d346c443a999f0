"""What carries ``app.groups``' broadcasts between processes (`fastrapi.core.broker`).

`LocalBroker` keeps them in one process (the default); `RedisBroker`
(``fastrapi.brokers.redis``, the ``[redis]`` extra) shares them through
Redis pub/sub. It is imported on first use, so that this package needs no
redis package until then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastrapi.core.broker import Broker, BrokerStats, LocalBroker

if TYPE_CHECKING:
    from fastrapi.brokers.redis import RedisBroker


def __getattr__(name: str) -> Any:
    if name == "RedisBroker":
        from fastrapi.brokers.redis import RedisBroker

        return RedisBroker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Broker", "BrokerStats", "LocalBroker", "RedisBroker"]
