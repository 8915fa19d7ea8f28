"""Cache reads through a ``unix://`` Redis URL against ``redis://`` (TCP), same Redis, same run.

Both go through ``cache.RedisCache`` on the event loop (the pipelined small client); the figure
is the ratio of versioned reads per second, unix / TCP (≥ 1 expected: no stall of the loop).

    redis-server --port 6402 --unixsocket /tmp/bench-redis.sock --save ''
    python -m bench.redis_url_bench --tcp redis://127.0.0.1:6402/0 --unix unix:///tmp/bench-redis.sock
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from shikaku_server.cache import RedisCache, RedisClient


async def _rate(url: str, reads: int, concurrency: int) -> float:
    client = RedisClient(url)
    cache = RedisCache(client)
    await cache.set_versioned("bench", 0, "k", b"x" * 1500, 600)  # about one bundle
    per_task = reads // concurrency

    async def reader() -> None:
        for _ in range(per_task):
            await cache.get_versioned("bench", "k")

    start = time.perf_counter()
    await asyncio.gather(*(reader() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    client.close()
    return per_task * concurrency / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcp", required=True)
    parser.add_argument("--unix", required=True)
    parser.add_argument("--reads", type=int, default=40_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tcp, unix = [], []
    for _ in range(args.rounds):  # alternated: the machine is shared
        tcp.append(asyncio.run(_rate(args.tcp, args.reads, args.concurrency)))
        unix.append(asyncio.run(_rate(args.unix, args.reads, args.concurrency)))
    t, u = statistics.median(tcp), statistics.median(unix)
    print(f"redis:// {t:,.0f} reads/s  unix:// {u:,.0f} reads/s  ratio unix/tcp {u / t:.2f}")


if __name__ == "__main__":
    main()
