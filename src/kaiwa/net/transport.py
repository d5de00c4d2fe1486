"""An httpx transport that connects only to addresses an `AddressPolicy` has checked.

    transport = GuardedTransport(AddressPolicy.parse("10.0.0.0/8"))
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("http://169.254.169.254/")  # raises BlockedAddress, nothing is sent

The host name is resolved once per connection, by `GuardedBackend.connect_tcp`; every address it
resolves to is checked, with the port (an allowlist entry may name one), and the socket is opened
to one of those very addresses. No other lookup
happens between the check and the connection, so a name that resolves to a public address for the
check and to a private one a moment later (DNS rebinding) cannot slip through. TLS SNI, certificate
verification and the `Host` header keep the original name: httpcore takes them from the URL, not
from the address the backend connected to.

Deliberate oddities: httpx's own `AsyncHTTPTransport` cannot be given a network backend, so this
module builds the httpcore pool itself and repeats the few lines of httpx that turn an
`httpx.Request` into an `httpcore.Request` and httpcore's exceptions into httpx's. No proxy is
ever used: a proxy would resolve the name itself, after the check.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import typing
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator

import httpcore
import httpx

from kaiwa.net.addresses import AddressPolicy, IPAddress

__all__ = ["GuardedBackend", "GuardedTransport", "Resolver", "resolve"]

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""`(host, port) -> addresses`, in the order to try them."""

_LIMITS = httpx.Limits(max_connections=20, max_keepalive_connections=10)
_SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)  # httpcore's SOCKET_OPTION


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of `host`, by the system resolver (`getaddrinfo`), without duplicates."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that resolves, checks, then connects to a checked address."""

    def __init__(self, policy: AddressPolicy, *, resolver: Resolver = resolve) -> None:
        self._policy = policy
        self._resolver = resolver
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's signature
        local_address: str | None = None,
        socket_options: Iterable[_SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._addresses(host, port, seconds=timeout)
        self._policy.check(host, addresses, port)
        failure: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in addresses:
            try:
                return await self._backend.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None  # `_addresses` never returns an empty list
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)

    async def _addresses(self, host: str, port: int, *, seconds: float | None) -> list[IPAddress]:
        try:
            return [ipaddress.ip_address(host)]
        except ValueError:
            pass
        try:
            async with asyncio.timeout(seconds):
                addresses = await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from None
        except (OSError, UnicodeError):
            raise httpcore.ConnectError(f"cannot resolve {host}") from None
        if not addresses:
            raise httpcore.ConnectError(f"cannot resolve {host}")
        return addresses


class GuardedTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` over a connection pool that uses a `GuardedBackend`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        resolver: Resolver = resolve,
        limits: httpx.Limits = _LIMITS,
    ) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolver=resolver),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = await self._pool.handle_async_request(core_request)
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


# Most specific first: the first `isinstance` match wins.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for core_error, httpx_error in _ERRORS:
            if isinstance(exc, core_error):
                raise httpx_error(str(exc)) from exc
        raise
