"""The hiredis command packer puts the same bytes on the wire as redis-py's own."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, OutOfMemoryError, ResponseError

from receiver.connection import connect, storage_trouble


@pytest.mark.parametrize(
    "args",
    [
        ("SET", "key", "value"),
        ("CONFIG GET", "maxmemory"),
        (b"CLIENT SETNAME", "tashooks"),
        ("XADD", "s", "MINID", "~", 1234, "*", "f", "é ü", "n", 2.5),
        ("SET", b"\x00\xff", b"\r\n"),
        ("EVAL", "return 1", 0),
    ],
)
async def test_same_bytes_as_redis_py(args: tuple[object, ...]) -> None:
    client = connect("redis://127.0.0.1:1/0")
    ours = client.connection_pool.make_connection()
    theirs = Connection()
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))
    both = [args, ("PING",)]
    assert b"".join(ours.pack_commands(both)) == b"".join(theirs.pack_commands(both))
    await client.aclose()


@pytest.mark.parametrize("bad", [None, True, {"a": 1}])
async def test_values_redis_cannot_take_are_refused(bad: object) -> None:
    client = connect("redis://127.0.0.1:1/0")
    conn = client.connection_pool.make_connection()
    with pytest.raises(DataError):
        conn.pack_command("SET", "key", bad)
    await client.aclose()


async def test_storage_trouble_tells_an_outage_from_a_bad_command(redis_url: str) -> None:
    """Error replies of a real Redis: out of memory is trouble (503, retry later); a command
    Redis refuses as wrong is not (a bug: retrying would not help)."""
    client = connect(redis_url)
    try:
        with pytest.raises(ResponseError) as bad:
            await client.xrange("stream", "not-an-id", "+")
        assert not storage_trouble(bad.value)
        await client.config_set("maxmemory", 1)
        try:
            with pytest.raises(OutOfMemoryError) as oom:
                await client.set("key", "value")
        finally:
            await client.config_set("maxmemory", 0)
        assert storage_trouble(oom.value)
    finally:
        await client.aclose()
    down = connect("redis://127.0.0.1:1/0")
    with pytest.raises(RedisConnectionError) as refused:
        await down.ping()
    assert storage_trouble(refused.value)
    await down.aclose()
