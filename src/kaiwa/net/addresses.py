"""Which addresses `fetch_web_content` may connect to: the public internet, plus an allowlist.

    policy = AddressPolicy.parse("127.0.0.1:8080, [::1]:8080, 10.0.0.0/8, wiki.internal")
    policy.refusal("example.com", ip_address("93.184.216.34"), 443)  # None: allowed
    policy.refusal("127.0.0.1", ip_address("127.0.0.1"), 8080)  # None: that port is listed
    policy.refusal("127.0.0.1", ip_address("127.0.0.1"), 8000)
    # "127.0.0.1 is a loopback address (allowed on port 8080 only)"
    policy.refusal("metadata", ip_address("169.254.169.254"), 80)
    # "metadata resolves to 169.254.169.254, a link-local address"

Everything here is pure: resolving names and connecting is `kaiwa.net.transport`'s job.

Deliberate choices:

- An address is refused unless `ipaddress` calls it global, and multicast is refused although
  `is_global` lets it through. The reasons are checked from the most telling to the vaguest, so
  `169.254.169.254` is "link-local" rather than "private".
- IPv6 addresses that carry an IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, 6to4 `2002::/16`,
  NAT64 `64:ff9b::/96`) are judged by the IPv4 address they carry: `::ffff:127.0.0.1` is loopback.
- An allowlisted host name skips the address check entirely (the operator vouches for the name);
  an allowlisted network allows only the addresses inside it.
- An entry may name a port (`host:8080`, `127.0.0.1:8080`, `10.0.0.0/8:443`, `[::1]:8080`,
  `[fd00::/8]:443`): it then allows that port alone, so allowing one loopback service does not
  open every other port of the host (kaiwa's own API among them). An entry without a port allows
  every port. An IPv6 entry with a port needs its brackets; a bare IPv6 entry has no port.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["AddressPolicy", "BlockedAddress", "IPAddress", "classify"]

IPAddress = IPv4Address | IPv6Address

_SHARED = IPv4Network("100.64.0.0/10")  # carrier-grade NAT; `is_private` says False
_NAT64 = IPv6Network("64:ff9b::/96")


class BlockedAddress(Exception):
    """A connection refused before it was made; `message` names the host, address and reason."""

    def __init__(self, message: str, *, host: str, address: IPAddress) -> None:
        super().__init__(message)
        self.message = message
        self.host = host
        self.address = address


def classify(address: IPAddress) -> str | None:
    """Why `address` is not on the public internet ("a loopback address"), or None if it is."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return classify(embedded)
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address in _SHARED:
        return "a shared (carrier-grade NAT) address"
    if isinstance(address, IPv6Address) and address.is_site_local:
        return "a site-local address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    if not address.is_global:
        return "not a globally routable address"
    return None


Network = IPv4Network | IPv6Network


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The public internet plus the hosts and networks of `KAIWA_FETCH_ALLOW_PRIVATE`.

    Each entry is kept with its port, or None for every port.
    """

    hosts: frozenset[tuple[str, int | None]] = frozenset()
    networks: tuple[tuple[Network, int | None], ...] = ()

    @classmethod
    def parse(cls, allow_private: str) -> AddressPolicy:
        """Comma-separated host names, addresses and CIDRs, each with an optional `:port`;
        raises `ValueError` for a bad one."""
        hosts: set[tuple[str, int | None]] = set()
        networks: list[tuple[Network, int | None]] = []
        for raw in allow_private.split(","):
            if not raw.strip():
                continue
            entry, port = _split_port(raw.strip())
            if _looks_numeric(entry):
                try:
                    network = ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise ValueError(
                        f"fetch_allow_private: {raw.strip()!r} is neither an address nor a CIDR"
                    ) from None
                if (network, port) not in networks:
                    networks.append((network, port))
            else:
                hosts.add((_normal_host(entry), port))
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def lists(self, host: str, port: int | None = None) -> bool:
        """Whether `host` itself is listed for `port`: by name, or as a literal address inside a
        listed network. (None: a port not known, which only an entry without port allows.)"""
        literal = _literal(host)
        if literal is None:
            return _fits(self._host_ports(host), port)
        return _fits(self._network_ports(literal), port)

    def refusal(self, host: str, address: IPAddress, port: int | None = None) -> str | None:
        """None if `host` may be reached at `address` on `port`, else a sentence saying why not."""
        named = self._host_ports(host)
        if _fits(named, port):
            return None
        listed = self._network_ports(address)
        if _fits(listed, port):
            return None
        reason = classify(address)
        if reason is None:
            return None
        if _literal(host) == address:
            sentence = f"{host.strip('[]')} is {reason}"
        else:
            sentence = f"{host} resolves to {address}, {reason}"
        ports = sorted(p for p in named | listed if p is not None)
        if ports:
            sentence += f" (allowed on port {', '.join(map(str, ports))} only)"
        return sentence

    def check(self, host: str, addresses: list[IPAddress], port: int | None = None) -> None:
        """Raise `BlockedAddress` unless every one of `addresses` may be reached on `port`."""
        for address in addresses:
            reason = self.refusal(host, address, port)
            if reason is not None:
                raise BlockedAddress(reason, host=host, address=address)

    def _host_ports(self, host: str) -> set[int | None]:
        name = _normal_host(host)
        return {port for listed, port in self.hosts if listed == name}

    def _network_ports(self, address: IPAddress) -> set[int | None]:
        plain = _unmapped(address)
        return {port for net, port in self.networks if plain in net or address in net}


def _fits(ports: set[int | None], port: int | None) -> bool:
    """An entry without port allows any; one with a port allows that port only."""
    return None in ports or (port is not None and port in ports)


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:8080` → (`host`, 8080); `[::1]:8080` → (`::1`, 8080); `::1`, `[::1]` → no port."""
    if entry.startswith("["):
        inside, bracket, rest = entry[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(
                f"fetch_allow_private: {entry!r} is not `[address]` or `[address]:port`"
            )
        return inside, (_port(entry, rest[1:]) if rest else None)
    if entry.count(":") == 1:  # a name, an IPv4 address or an IPv4 CIDR, then its port
        name, _, port = entry.partition(":")
        return name, _port(entry, port)
    return entry, None  # a name, IPv4, or IPv6 written bare (no port without brackets)


def _port(entry: str, text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise ValueError(f"fetch_allow_private: {entry!r} has no valid port (1 to 65535)")
    return int(text)


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    if isinstance(address, IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _looks_numeric(entry: str) -> bool:
    return "/" in entry or ":" in entry or entry.replace(".", "").isdigit()


def _normal_host(host: str) -> str:
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host
