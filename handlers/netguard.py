"""Which addresses Slack and HTTP targets may reach, and a transport that enforces it (SSRF).

A request of an ``http`` or ``slack`` step goes only to public addresses unless its target
says ``allow_private: true``. Refused: loopback, unspecified, link-local (which includes
cloud metadata at 169.254.169.254), multicast, private (RFC 1918, fc00::/7) and every other
range that is not globally routable (100.64.0.0/10, documentation and benchmarking ranges,
reserved). IPv4 inside IPv6 (``::ffff:a.b.c.d``, 6to4, NAT64 ``64:ff9b::/96``) is judged by
its IPv4 address. A host is refused when *any* of its addresses is.

``GuardedTransport`` checks at connect time: it resolves the host once, checks every
address and connects to a checked address, so a DNS answer that changes between check and
connect (DNS rebinding) cannot reach an internal address. TLS still uses the host name
(SNI and certificate check unchanged). ``check_host`` alone is the check without that
guarantee, for clients that resolve again themselves.

The API client (``API_URL``) is not checked: the operator set it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import typing
from collections.abc import Awaitable, Callable

import httpcore
import httpx

from handlers.exceptions import StepError

# Request extension carrying the target's ``allow_private`` to ``GuardedTransport``.
ALLOW_PRIVATE = "tashooks.allow_private"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

Resolver = Callable[[str, int], Awaitable[list[str]]]


def refusal(address: str) -> str | None:
    """Why ``address`` (an IP literal) may not be reached, or None when it is public."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not the address
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return refusal(str(embedded))
    checks = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("private", ip.is_private),
        ("not public", not ip.is_global),
    )
    return next((reason for reason, hit in checks if hit), None)


async def resolve(host: str, port: int) -> list[str]:
    """Every address of ``host`` (the system resolver, through the event loop)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def check_host(host: str, port: int, *, resolver: Resolver = resolve) -> list[str]:
    """The addresses of ``host``, all public. Raises ``StepError`` (not retryable) when one
    is not, ``OSError`` when the host does not resolve."""
    addresses = await resolver(host, port)
    if not addresses:
        raise OSError(f"{host} has no address")
    for address in addresses:
        if (reason := refusal(address)) is not None:
            raise StepError(
                f"refused to connect to {host} ({address} is {reason}): targets reach only "
                "public addresses unless the target says allow_private: true",
                retryable=False,
            )
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend with the address check between resolving and connecting."""

    def __init__(self, resolver: Resolver = resolve) -> None:
        self._resolver = resolver
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                addresses = await check_host(host, port, resolver=self._resolver)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("targets are never Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _guarded(
    limits: httpx.Limits, resolver: Resolver, verify: ssl.SSLContext | bool
) -> httpx.AsyncHTTPTransport:
    """httpx's own transport (request and error mapping) over a pool with ``GuardedBackend``."""
    transport = httpx.AsyncHTTPTransport(limits=limits, verify=verify)
    # httpx has no public way to choose the network backend; fail loudly should that change
    # rather than run without the check.
    if not isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        raise RuntimeError("this httpx version cannot take the address guard")
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry,
        network_backend=GuardedBackend(resolver),
    )
    return transport


class GuardedTransport(httpx.AsyncBaseTransport):
    """Two connection pools: checked (the default) and open (requests whose extensions set
    ``ALLOW_PRIVATE``), so a connection made for an allowed target is never reused by
    another."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        resolver: Resolver = resolve,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._checked = _guarded(limits, resolver, verify)
        self._open = httpx.AsyncHTTPTransport(limits=limits, verify=verify)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        allowed = bool(request.extensions.get(ALLOW_PRIVATE))
        transport = self._open if allowed else self._checked
        return await transport.handle_async_request(request)

    async def aclose(self) -> None:
        await self._checked.aclose()
        await self._open.aclose()


class TargetClient(httpx.AsyncClient):
    """The worker's client for Slack and HTTP targets: redirects are never followed, proxy
    variables are ignored (a proxy would resolve the host itself), and connections go only
    to checked addresses (``handlers.client.send`` passes each target's ``allow_private``).
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        max_connections: int = 100,
        resolver: Resolver = resolve,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        super().__init__(
            timeout=timeout,
            headers=headers,
            follow_redirects=False,
            trust_env=False,
            transport=GuardedTransport(limits=limits, resolver=resolver, verify=verify),
        )
