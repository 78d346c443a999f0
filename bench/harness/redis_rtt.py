"""A bare Redis PUBLISH -> message round trip with redis.asyncio, for reference beside the broker's.

    python bench/harness/redis_rtt.py PORT [--count 300] [--size 49]

One process, two connections (a subscriber and a publisher), one message in
flight: the time from just before PUBLISH until the subscriber has the
message. This is the least a broadcast through Redis can add (two socket
hops through redis-server, on the same core as the servers); prints one JSON
line with every round trip in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

CHANNEL = b"bench:rtt"


async def round_trips(port: int, count: int, size: int) -> list[float]:
    from redis.asyncio import Redis

    subscriber = Redis(port=port)
    publisher = Redis(port=port)
    pubsub = subscriber.pubsub()
    await pubsub.subscribe(CHANNEL)
    while await pubsub.get_message(timeout=1.0) is None:  # the subscription's confirmation
        pass
    payload = b"x" * size
    times = []
    try:
        for index in range(count + 20):  # the first 20 warm up
            started = time.perf_counter()
            await publisher.publish(CHANNEL, payload)
            while True:
                message = await pubsub.get_message(timeout=5.0)
                if message is None:
                    raise TimeoutError("no message within 5 s")
                if message["type"] == "message":
                    break
            if index >= 20:
                times.append((time.perf_counter() - started) * 1e6)
            await asyncio.sleep(0.002)  # one at a time, as broadcasts go
    finally:
        await pubsub.aclose()
        await subscriber.aclose()
        await publisher.aclose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("port", type=int)
    parser.add_argument("--count", type=int, default=300)
    # A 32 B broadcast in the groups' envelope: a kind byte and a 16-byte origin id.
    parser.add_argument("--size", type=int, default=49)
    options = parser.parse_args()
    times = asyncio.run(round_trips(options.port, options.count, options.size))
    print(json.dumps({"round_trips_us": [round(t, 1) for t in times]}), flush=True)


if __name__ == "__main__":
    main()
