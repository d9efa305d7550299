"""Host allow-lists for URLs a caller supplies: literal matching, never DNS (a name that resolves somewhere else
later cannot widen the list). An entry is a hostname (`localhost`, `mcp.internal`), an IP address or a network
(`127.0.0.0/8`, `::1`).
"""

import ipaddress
from dataclasses import dataclass
from typing import Final

__all__ = ["LOOPBACK_HOSTS", "HostAllowList", "check_host_entry"]

LOOPBACK_HOSTS: Final = ("localhost", "127.0.0.0/8", "::1")
_MAX_NAME_CHARS: Final = 253

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _network(entry: str) -> IpNetwork | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def _address(host: str) -> IpAddress | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    # ::ffff:169.254.169.254 reaches the IPv4 address: match it as that address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_host_entry(entry: str) -> str:
    """Validate one allow-list entry; returns it lower-cased.

    Raises:
        ValueError: neither an IP address/network nor a plain hostname.
    """
    value = entry.strip().lower()
    if _network(value) is not None:
        return value
    labels = value.split(".")
    if (
        not value
        or len(value) > _MAX_NAME_CHARS
        or not all(label and label.replace("-", "").replace("_", "").isalnum() and label.isascii() for label in labels)
    ):
        raise ValueError(f"{entry!r} is neither an IP address or network nor a hostname")
    return value


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """The hosts a caller-supplied URL may name.

    Args:
        entries: hostnames (exact, case-insensitive), IP addresses and networks.
        setting: the setting that holds the list, named in refusals so an operator knows what to change.
    """

    entries: tuple[str, ...]
    setting: str

    def admits(self, host: str) -> bool:
        """Whether `host` (a URL's hostname: no brackets, no port) is on the list."""
        name = host.lower()
        address = _address(name)
        for entry in self.entries:
            if address is not None:
                network = _network(entry)
                if network is not None and address in network:
                    return True
            elif entry == name:
                return True
        return False
