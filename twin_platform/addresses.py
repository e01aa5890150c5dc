"""Which IP addresses a crawler may reach, and which allow-list entries are acceptable.

Public unicast only. IPv6 addresses that carry an IPv4 address (IPv4-mapped, NAT64 64:ff9b::/96,
6to4 2002::/16) are judged by that IPv4 address, since the network delivers them there; prefixes
whose target cannot be told from the address (local-use NAT64 64:ff9b:1::/48), and the deprecated
IPv4-compatible (::/96) and site-local (fec0::/10) ranges are never public. Pure `ipaddress`: the
settings validate allow-lists with it.
"""

from __future__ import annotations

from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

_MAPPED = IPv6Network("::ffff:0:0/96")
_NAT64 = IPv6Network("64:ff9b::/96")
_COMPATIBLE = IPv6Network("::/96")
_SIXTOFOUR = IPv6Network("2002::/16")
_NEVER_PUBLIC = (IPv6Network("64:ff9b:1::/48"), IPv6Network("fec0::/10"), _COMPATIBLE)
# An allow-list entry may open at most this much: (shortest prefix, shortest prefix with public
# addresses). 10.0.0.0/8 and fc00::/7 stay possible; 0.0.0.0/0 or a public /8 do not.
_BREADTH = {4: (8, 16), 6: (7, 32)}


def embedded_ipv4(ip: IPAddress) -> IPv4Address | None:
    """The IPv4 address an IPv6 transition address delivers to, if it has one."""
    if isinstance(ip, IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def is_public(ip: IPAddress) -> bool:
    """Globally routable unicast, looking through IPv4-in-IPv6 wrappers."""
    inner = embedded_ipv4(ip)
    if inner is not None:
        return is_public(inner)
    if isinstance(ip, IPv6Address) and any(ip in net for net in _NEVER_PUBLIC):
        return False
    return ip.is_global and not ip.is_multicast


def is_allowed(ip: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    """The address, or the IPv4 address it wraps, is in an allowed network."""
    inner = embedded_ipv4(ip)
    return any(ip in net or (inner is not None and inner in net) for net in networks)


def parse_address(text: str) -> IPAddress:
    return ip_address(text.split("%")[0])  # drop an IPv6 zone id (fe80::1%eth0)


def parse_allow_network(entry: str) -> str:
    """`entry` as a canonical CIDR, or ValueError when it is invalid or too broad to be safe."""
    try:
        network = ip_network(entry.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"{entry!r} is not an IP network (give a CIDR such as 10.0.0.0/8)"
        ) from None
    if _too_broad(network):
        shortest, shortest_public = _BREADTH[network.version]
        raise ValueError(
            f"{entry!r} is too broad to allow: it would turn the SSRF guard off for much of the"
            f" address space (at most /{shortest}, or /{shortest_public} where public addresses"
            " are included)"
        )
    return str(network)


def _too_broad(network: IPNetwork) -> bool:
    if isinstance(network, IPv6Network):
        for wrapper in (_MAPPED, _NAT64, _COMPATIBLE, _SIXTOFOUR):
            if network.supernet_of(wrapper):
                return True  # every IPv4 address, wrapped
            if network.subnet_of(wrapper):
                return _too_broad(_wrapped_network(network, wrapper))
    shortest, shortest_public = _BREADTH[network.version]
    if network.prefixlen < shortest:
        return True
    public = is_public(network.network_address) or is_public(network.broadcast_address)
    return public and network.prefixlen < shortest_public


def _wrapped_network(network: IPv6Network, wrapper: IPv6Network) -> IPv4Network:
    """The IPv4 addresses that the IPv6 `network` inside `wrapper` delivers to."""
    if wrapper == _SIXTOFOUR:  # the IPv4 address is in bits 16-48
        start, prefix = int(network.network_address) >> 80, network.prefixlen - 16
    else:  # in the low 32 bits
        start, prefix = int(network.network_address), network.prefixlen - 96
    return IPv4Network((start & 0xFFFFFFFF, min(prefix, 32)), strict=False)
