"""Which addresses `fetch_web_content` may connect to: the public internet, plus an allowlist.

    policy = AddressPolicy.parse("127.0.0.1, 10.0.0.0/8, wiki.internal")
    policy.refusal("example.com", ip_address("93.184.216.34"))  # None: allowed
    policy.refusal("metadata", ip_address("169.254.169.254"))
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


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """The public internet plus the hosts and networks of `KAIWA_FETCH_ALLOW_PRIVATE`."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[IPv4Network | IPv6Network, ...] = ()

    @classmethod
    def parse(cls, allow_private: str) -> AddressPolicy:
        """Comma-separated host names, addresses and CIDRs; raises `ValueError` for a bad one."""
        hosts: set[str] = set()
        networks: list[IPv4Network | IPv6Network] = []
        for raw in allow_private.split(","):
            entry = raw.strip().strip("[]")
            if not entry:
                continue
            if _looks_numeric(entry):
                try:
                    networks.append(ipaddress.ip_network(entry, strict=False))
                except ValueError:
                    raise ValueError(
                        f"fetch_allow_private: {raw.strip()!r} is neither an address nor a CIDR"
                    ) from None
            else:
                hosts.add(_normal_host(entry))
        return cls(hosts=frozenset(hosts), networks=tuple(networks))

    def allows_host(self, host: str) -> bool:
        return _normal_host(host) in self.hosts

    def refusal(self, host: str, address: IPAddress) -> str | None:
        """None if `host` may be reached at `address`, else a sentence saying why not."""
        if self.allows_host(host):
            return None
        plain = _unmapped(address)
        if any(plain in network or address in network for network in self.networks):
            return None
        reason = classify(address)
        if reason is None:
            return None
        if _literal(host) == address:
            return f"{host.strip('[]')} is {reason}"
        return f"{host} resolves to {address}, {reason}"

    def check(self, host: str, addresses: list[IPAddress]) -> None:
        """Raise `BlockedAddress` unless every one of `addresses` may be reached."""
        for address in addresses:
            reason = self.refusal(host, address)
            if reason is not None:
                raise BlockedAddress(reason, host=host, address=address)


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
