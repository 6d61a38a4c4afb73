"""Which addresses recording downloads may connect to, and the httpx transport that holds
every connection (each redirect hop included) to that rule.

A recording URL is the one URL Callhook fetches that a vendor's data names, so it must not
reach what only the worker can reach: loopback, private networks, link-local addresses
(where cloud metadata services answer) and the like. `GuardedTransport` resolves the
request's host itself, refuses it when any of its addresses is not allowed, and connects to
an address it checked (the URL's host stays in the `Host` header and the TLS SNI, so the
certificate is verified for the name). Nothing resolves the name a second time, so DNS
rebinding between the check and the connection is not possible.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: (host, port) → the addresses it resolves to, in the order to try them
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]

#: the most redirects one recording download follows (each hop is checked)
MAX_REDIRECTS = 5

#: cloud metadata services that are not on a link-local address (AWS's IPv6 endpoint,
#: Alibaba Cloud, Oracle Cloud); 169.254.169.254 is link-local and refused as such
_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The URL's host is, or resolves to, an address downloads may not connect to."""

    def __init__(self, host: str, address: IPAddress, kind: str) -> None:
        named = host if _literal(host) == address else f"{host} resolves to {address}, which"
        super().__init__(f"{named} is a {kind} address")
        self.host = host
        self.address = address
        self.kind = kind


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal(address: IPAddress, *, allow_private_networks: bool) -> str | None:
    """What kind of address `address` is when downloads may not connect to it, else None.

    Always refused: unspecified (0.0.0.0, ::), multicast, link-local and cloud metadata
    addresses, and reserved ranges. Refused unless `allow_private_networks`: everything
    else that is not globally reachable (loopback, RFC 1918, CGNAT, unique-local...). An
    IPv6 address that leads to an IPv4 one (IPv4-mapped, NAT64, 6to4) is judged by that.
    """
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal(embedded, allow_private_networks=allow_private_networks)
    if address.is_unspecified:
        return "unspecified"  # connecting to 0.0.0.0 reaches this very host
    if address.is_multicast:
        return "multicast"
    if address.is_link_local or address in _METADATA:
        return "link-local or cloud metadata"
    if address.is_loopback:
        return None if allow_private_networks else "loopback"
    if address.is_reserved:
        return "reserved"
    if address.is_global or allow_private_networks:
        return None
    return "private"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d, which a dual-stack socket connects
    to a.b.c.d), 6to4 or NAT64 (64:ff9b::/96, DNS64's answers) address leads to."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to for a TCP connection, each once, in resolver order."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        # an IPv6 sockaddr may carry a scope ("fe80::1%eth0"): judge the address alone
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    return found


class GuardedTransport(httpx.AsyncBaseTransport):
    """Sends each request to a checked address of its host through `inner` (owned: closed
    with this transport). Raises `AddressRefused` before any connection when one of the
    host's addresses is refused; tries the addresses in order when connecting fails.

    `inner` should keep no idle connections: its pool is keyed by address, and a
    connection kept for one host name must not carry a request for another."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        *,
        allow_private_networks: bool,
        resolver: Resolver = resolve,
    ) -> None:
        self._inner = inner
        self._allow_private = allow_private_networks
        self._resolve = resolver

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        host, port = url.host, url.port or (443 if url.scheme == "https" else 80)
        if url.scheme not in ("http", "https") or not host:
            raise httpx.UnsupportedProtocol(f"not an http(s) URL: {url.scheme}", request=request)
        addresses = await self._addresses(host, port, request)
        for address in addresses:
            kind = refusal(address, allow_private_networks=self._allow_private)
            if kind is not None:
                raise AddressRefused(host, address, kind)
        failure: httpx.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.handle_async_request(_to(request, address, host))
            except httpx.ConnectError as exc:
                failure = exc
        assert failure is not None  # _addresses never returns an empty list
        raise failure

    async def _addresses(self, host: str, port: int, request: httpx.Request) -> list[IPAddress]:
        literal = _literal(host)
        if literal is not None:
            return [literal]
        timeout = request.extensions.get("timeout", {}).get("connect")
        try:
            async with asyncio.timeout(timeout):
                found = await self._resolve(host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"resolving {host} timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot resolve {host}: {exc}", request=request) from exc
        if not found:
            raise httpx.ConnectError(f"{host} resolves to no address", request=request)
        return found

    async def aclose(self) -> None:
        await self._inner.aclose()


def _to(request: httpx.Request, address: IPAddress, host: str) -> httpx.Request:
    """`request` addressed to `address`; the Host header (set from the URL when the request
    was built) and the TLS server name stay the host's."""
    return httpx.Request(
        request.method,
        request.url.copy_with(host=str(address)),
        headers=request.headers,
        stream=request.stream,
        extensions={**request.extensions, "sni_hostname": host},
    )


def recording_client(*, allow_private_networks: bool, user_agent: str) -> httpx.AsyncClient:
    """A client for recording downloads: every hop through `GuardedTransport`, at most
    `MAX_REDIRECTS` redirects, no idle connections kept. No proxy from the environment is
    used (the transport is explicit; a proxy would connect to addresses never checked),
    nor `.netrc` credentials (`trust_env=False`)."""
    inner = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=0)
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(inner, allow_private_networks=allow_private_networks),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        trust_env=False,
        headers={"user-agent": user_agent},
    )
