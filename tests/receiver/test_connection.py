"""The hiredis command packer puts the same bytes on the wire as redis-py's own."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from receiver.connection import connect


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
