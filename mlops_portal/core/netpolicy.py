"""Which addresses the portal's workers may connect to: SSRF protection, shared by the health
check prober (monitoring.netpolicy) and artifact downloads (deployments.artifacts).

Anyone who can save a health check or register an artifact URI makes a worker send requests
from inside the network, so the targets are an allow list, one setting per use
(HEALTHCHECK_ALLOWED_NETWORKS, ARTIFACT_ALLOWED_NETWORKS): a subclass names its setting
and who connects, for the messages. Each entry is
either a network ("10.0.0.0/8", "127.0.0.1") or a host name pattern ("models.internal",
"*.svc.cluster.local"). The default allows loopback and the private ranges, since models are
served internally.

Two checks, at two moments:
- `check_url` when a check or URI is saved (and, without DNS, before each request): scheme, no
  credentials, and the host: an IP literal must be in an allowed network; a name must match a
  pattern or resolve only to addresses in allowed networks.
- `check_address` when the worker connects, on the addresses DNS answered then. A name that
  passed at save time may resolve elsewhere later (DNS rebinding); this is the check that
  counts.

Semantics of host name patterns: a pattern trusts the *name*, whatever address it resolves
to (cluster DNS answers pod and service addresses that no one wants to list), except the
addresses no connection goes to. Those are refused even when listed: link-local (169.254.0.0/16,
fe80::/10, where the cloud metadata services answer, plus AWS's fd00:ec2::254), the
"this host" network 0.0.0.0/8 and ::, multicast and the broadcast address.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass
from typing import ClassVar

from yarl import URL

DEFAULT_ALLOWED = [
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2")
)
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # "this host"; Linux connects it to localhost
BROADCAST = ipaddress.ip_address("255.255.255.255")

# One DNS label: letters, digits, hyphens inside, at most 63 characters.
LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class NetPolicy:
    networks: tuple[IPNetwork, ...]
    hostnames: tuple[str, ...] = ()

    SETTING: ClassVar[str] = "the allowed networks"  # named in the messages
    WHO: ClassVar[str] = "connections"  # "… never go there"

    @classmethod
    def from_setting(cls, entries: list[str] | str) -> "NetPolicy":
        """Parse the setting; a string is split on commas (the environment variable form)."""
        if isinstance(entries, str):
            entries = entries.split(",")
        networks: list[IPNetwork] = []
        hostnames: list[str] = []
        for raw in entries:
            entry = str(raw).strip()
            if not entry:
                continue  # a trailing comma in the environment variable
            network = parse_network(entry, cls.SETTING)
            if network is not None:
                networks.append(network)
            else:
                hostnames.append(parse_hostname_pattern(entry, cls.SETTING))
        return cls(networks=tuple(networks), hostnames=tuple(hostnames))

    def check_url(self, url: str, *, resolve: bool = True) -> str | None:
        """Why `url` may not be probed, or None when it may.

        resolve=False skips DNS (names are then checked by `check_address` at connect time);
        the prober uses it inside its event loop, where a blocking lookup would stall the
        other probes."""
        try:
            parsed = URL(url)
        except (TypeError, ValueError):
            return f"{url!r} is not a valid URL."
        if not parsed.scheme or "://" not in url:  # yarl reads "10.0.0.1:80/" as a scheme
            return "The URL must start with http:// or https://."
        if parsed.scheme not in ("http", "https"):
            return f"Only http:// and https:// URLs can be probed, not {parsed.scheme}://."
        # Parse as aiohttp does (yarl), so the host checked is the host connected to.
        host = parsed.raw_host
        if not host:
            return "The URL has no host."
        # The host first: for "http://10.0.0.1@169.254.169.254/" the reason that matters is
        # where the request would go, not the userinfo in front of it.
        error = self.check_host(host, parsed.port or 0, resolve=resolve)
        if error:
            return error
        if parsed.raw_user is not None or parsed.raw_password is not None:
            return "The URL must not contain credentials (user:password@)."
        return None

    def check_host(self, host: str, port: int = 0, *, resolve: bool = True) -> str | None:
        """Why `host` (an IP literal or a name) may not be connected to, or None."""
        if looks_numeric(host):
            address = parse_address(host)
            if address is None:
                return f"{host} is not a canonical IP address."
            return self.check_address(str(address))
        if self.matches_hostname(host):
            return None  # trusted by name; its addresses still face `check_address(host=…)`
        if not resolve:
            return None
        return self.check_name(host, port)

    def check_name(self, host: str, port: int = 0) -> str | None:
        """Resolve `host` and check every address it answers: all must be allowed."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return f"Cannot resolve {host}."
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if not addresses:
            return f"Cannot resolve {host}."
        for address in addresses:
            error = self.check_address(address, host=host)
            if error:
                return error
        return None

    def check_address(self, ip: str, *, host: str | None = None) -> str | None:
        """Why connecting to `ip` is refused, or None. `host` is the name it was resolved
        from, when there is one: a name matching a host name pattern may use any address
        except the ones refused always."""
        address = parse_address(ip)
        if address is None:
            return f"{ip} is not an IP address."
        shown = ip if host is None else f"{host} resolves to {ip}, which"
        never = never_reason(address)
        if never:
            return f"{shown} is {never}; {self.WHO} never go there."
        if host is not None and self.matches_hostname(host):
            return None
        if any(address in network for network in self.networks):
            return None
        if host is None:
            return f"{ip} is outside {self.SETTING}."
        return f"{host} resolves to {ip}, outside {self.SETTING}."

    def matches_hostname(self, host: str) -> bool:
        """Exact names match themselves; "*.suffix" matches any name below suffix (at any
        depth) but not suffix itself."""
        name = host.rstrip(".").lower()
        for pattern in self.hostnames:
            if pattern.startswith("*."):
                if name.endswith(pattern[1:]):
                    return True
            elif name == pattern:
                return True
        return False


def parse_network(entry: str, setting: str) -> IPNetwork | None:
    """The network `entry` names, None when it is not an address at all (a host name), or
    ValueError when it is a malformed one."""
    if not (looks_numeric(entry.split("/", 1)[0]) or "/" in entry):
        return None
    try:
        return ipaddress.ip_network(entry, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            fixed = ipaddress.ip_network(entry, strict=False)
            raise ValueError(
                f"{setting}: {entry!r} has host bits set; did you mean {fixed}?"
            ) from None
        raise ValueError(f"{setting}: {entry!r} is not a valid IP network.") from None


def parse_hostname_pattern(entry: str, setting: str) -> str:
    pattern = entry.lower().rstrip(".")
    name = pattern.removeprefix("*.")
    labels = name.split(".")
    valid = (
        len(name) <= 253
        and all(LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()  # "10.0.0.300" is a broken address, not a name
    )
    if not valid:
        raise ValueError(
            f"{setting}: {entry!r} is neither an IP network (10.0.0.0/8, 127.0.0.1) nor a host"
            ' name pattern (models.internal, "*.svc.cluster.local").'
        )
    return pattern


def looks_numeric(host: str) -> bool:
    """The same test aiohttp uses to skip DNS: IPv6 (a colon) or only digits and dots. Such
    a host is never resolved, so it is checked as an address (and "127.1" is refused)."""
    return ":" in host or host.replace(".", "").isdigit()


def parse_address(ip: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(ip.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            address = ipaddress.IPv6Address(str(address).split("%", 1)[0])
        if address.ipv4_mapped:  # ::ffff:169.254.169.254 reaches the IPv4 address
            return address.ipv4_mapped
    return address


def never_reason(address: IPAddress) -> str:
    """Why no policy can allow `address`, or "" when a policy may."""
    if address in METADATA_ADDRESSES:
        return "link-local (cloud metadata)" if address.is_link_local else "cloud metadata"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified or address in THIS_NETWORK:
        return "unspecified (this host)"
    if address.is_multicast:
        return "multicast"
    if address == BROADCAST:
        return "the broadcast address"
    return ""
