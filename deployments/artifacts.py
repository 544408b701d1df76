"""Downloading artifacts from their URI, inside the network policy.

Registering a URI makes a worker fetch it from inside the network, so downloads obey the
same rules as health checks (mlops_portal.core.netpolicy), from ARTIFACT_ALLOWED_NETWORKS:
- when the URI is registered, its shape and an IP-literal host are checked (`check_uri`);
  a name is not resolved then, since the web node may not see the artifact store's DNS;
- when the worker connects, every address the name resolves to is checked and the
  connection goes to the checked address (no second lookup to rebind), on the first
  request and on every redirect; link-local (cloud metadata) is refused whatever the
  setting says. No proxy from the environment is used: it would hide the real target.
"""

import functools
import socket

import httpcore
import httpx
from django.conf import settings

from mlops_portal.core import netpolicy
from mlops_portal.core.netpolicy import DEFAULT_ALLOWED

SETTING = "ARTIFACT_ALLOWED_NETWORKS"


class ArtifactPolicy(netpolicy.NetPolicy):
    SETTING = SETTING
    WHO = "artifact downloads"


class Refused(Exception):
    """The network policy refused a connection; the message says why."""


def policy_from_settings() -> ArtifactPolicy:
    entries = getattr(settings, SETTING, DEFAULT_ALLOWED)
    return _parsed_policy(entries if isinstance(entries, str) else tuple(entries))


@functools.lru_cache(maxsize=8)
def _parsed_policy(entries) -> ArtifactPolicy:
    """Parsed once per setting value (tests change it): every registration checks its URI."""
    return ArtifactPolicy.from_setting(entries)


def check_uri(uri: str) -> str | None:
    """Why `uri` may not be registered as an artifact URI, or None (no DNS lookup)."""
    return policy_from_settings().check_url(uri, resolve=False)


class PolicyBackend(httpcore.SyncBackend):
    """httpcore's network backend, resolving the host itself and connecting only to an
    address the policy allows."""

    def __init__(self, policy: netpolicy.NetPolicy) -> None:
        self.policy = policy

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = self.allowed_address(host, port)
        return super().connect_tcp(address, port, timeout, local_address, socket_options)

    def allowed_address(self, host: str, port: int) -> str:
        """The address to connect to; Refused when any address of the answer is refused
        (a rebinding answer mixing allowed and refused addresses gets no chance)."""
        error = self.policy.check_host(host, port, resolve=False)
        if error:
            raise Refused(error)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise Refused(f"Cannot resolve {host}.") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        name = None if netpolicy.looks_numeric(host) else host
        for address in addresses:
            error = self.policy.check_address(address, host=name)
            if error:
                raise Refused(error)
        if not addresses:
            raise Refused(f"Cannot resolve {host}.")
        return addresses[0]


class PolicyTransport(httpx.HTTPTransport):
    def __init__(self, policy: netpolicy.NetPolicy) -> None:
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=PolicyBackend(policy)
        )


def client(timeout: float) -> httpx.Client:
    """An HTTP client for artifact downloads: every request and redirect is checked
    (scheme, userinfo, IP literals) before it is sent, and every connection by address."""
    policy = policy_from_settings()

    def check_request(request: httpx.Request) -> None:
        error = policy.check_url(str(request.url), resolve=False)
        if error:
            raise Refused(error)

    return httpx.Client(
        transport=PolicyTransport(policy),
        timeout=timeout,
        follow_redirects=True,
        trust_env=False,
        event_hooks={"request": [check_request]},
    )


def download(uri: str, handle, *, limit: int, timeout: float) -> int:
    """Write the artifact at `uri` into the open binary file `handle`; return its size.
    Raises Refused (network policy), ValueError (over `limit` bytes, or not HTTP 200) or
    httpx.HTTPError."""
    received = 0
    with client(timeout) as http, http.stream("GET", uri) as response:
        if response.status_code != 200:
            raise ValueError(f"Downloading {uri} answered HTTP {response.status_code}.")
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > limit:
                raise ValueError(f"The artifact at {uri} is larger than {limit} bytes.")
            handle.write(chunk)
    handle.flush()
    return received
