"""The Redis that `taskgate dev --gateways M` starts is bounded: a maxmemory and an eviction
policy for its keys with a TTL (the cache and the rate-limit buckets), as compose's Redis."""

from __future__ import annotations

import redis

from tests.support.redis import RedisServer


def test_the_dev_redis_has_a_memory_cap_and_evicts_keys_with_a_ttl(
    redis_server: RedisServer,
) -> None:
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert client.config_get("maxmemory")["maxmemory"] == str(256 * 2**20)
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "volatile-lru"
    finally:
        client.close()
