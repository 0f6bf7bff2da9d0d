"""The address guard's decisions (no Scrapy here): which hosts a crawl may talk to.

A shop page or redirect must not make the crawler fetch internal services, so requests to
private, loopback, link-local (and other non-public) addresses are refused, unless the start
URL itself is such an address (crawling a shop on your own network is then what you asked for).

`pinned` maps host names to addresses the operator vouches for, like lines in /etc/hosts: a
pinned host connects to its address and is treated as a public host. Tests use it to give a
local server a public-looking name, so the guard can be tested end to end.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from catalog.errors import InvalidInput

Resolver = Callable[[str], list[str]]
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def is_internal_address(address: str) -> bool:
    """True for anything that is not a public unicast address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    shared = isinstance(ip, ipaddress.IPv4Address) and ip in ipaddress.ip_network("100.64.0.0/10")
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
            or ip.is_reserved or ip.is_unspecified or shared)


def system_resolve(host: str) -> list[str]:
    """Every address the system resolver gives for a host ([] if it does not resolve)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


class AddressPolicy:
    """Decides, per URL, whether a crawl that started at `start_url` may fetch it."""

    def __init__(self, start_url: str, pinned: Mapping[str, str] | None = None,
                 resolve: Resolver = system_resolve) -> None:
        self.pinned = {k.lower(): v for k, v in (pinned or {}).items()}
        self._resolve = resolve
        self._cache: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        start_host = (urlsplit(start_url).hostname or "").lower()
        self.allow_internal = self.host_is_internal(start_host)

    def addresses(self, host: str) -> list[str]:
        host = host.lower().strip("[]")
        if host in self.pinned:
            return [self.pinned[host]]
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
            return [host]
        except ValueError:
            pass
        with self._lock:
            cached = self._cache.get(host)
        if cached is None:
            cached = ["127.0.0.1"] if host in LOCAL_NAMES else self._resolve(host)
            with self._lock:
                self._cache[host] = cached
        return cached

    def host_is_internal(self, host: str) -> bool:
        if host.lower() in self.pinned:
            return False  # vouched for by the operator
        return any(is_internal_address(a) for a in self.addresses(host))

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be fetched, or None if it may."""
        host = (urlsplit(url).hostname or "").lower()
        if not host or self.allow_internal or host in self.pinned:
            return None
        for address in self.addresses(host):
            if is_internal_address(address):
                return f"{host} is an internal address ({address})"
        return None

    def address_allowed(self, host: str, address: str) -> bool:
        """For the resolver: may a connection to `host` go to `address`? (DNS rebinding)"""
        host = host.lower()
        return self.allow_internal or host in self.pinned or not is_internal_address(address)


# The policy of the crawl that is running; the process-wide Twisted resolver consults it.
_active: list[AddressPolicy] = []


def set_active_policy(policy: AddressPolicy | None) -> None:
    _active[:] = [policy] if policy is not None else []


def active_policy() -> AddressPolicy | None:
    return _active[0] if _active else None


def listen(host: str = "127.0.0.1", port: int = 8000) -> socket.socket:
    """A listening TCP socket (the web page and the demo shop); port 0 picks a free one.
    Raises InvalidInput when the address is taken, not ours or not a host."""
    if not 0 <= port <= 65535:
        raise InvalidInput(f"--port {port} must be between 0 and 65535")
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InvalidInput(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    family, _, _, _, address = infos[0]
    # proto must say TCP: asyncio sets TCP_NODELAY on accepted sockets only then, and without
    # it a kept-alive connection waits ~40 ms (Nagle vs delayed ACK) on every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise InvalidInput(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def serve_in_thread(server: Any, sockets: list[socket.socket], name: str,
                    timeout: float = 60.0) -> threading.Thread:
    """Run a `uvicorn.Server` on `sockets` in a daemon thread (the web page in tests and the
    benchmark, the demo shop); returns once it serves. When it stops or stalls during start-up
    it is told to exit and InvalidInput is raised (the caller closes its sockets)."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, name=name,
                              daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(10)
            raise InvalidInput(f"{name} did not start within {timeout:.0f} s")
        time.sleep(0.01)
    return thread
