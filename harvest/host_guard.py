"""The private-host guard: connections that refuse, after DNS, any peer address that is not public.

A crawler fed URLs by search engines must not be steered into the network it runs in (a cloud metadata service, a
router's admin page): :class:`GuardedAdapter` checks the address each new socket actually connected to, so a host
that resolves, re-resolves or redirects to a private, loopback, link-local, shared or reserved address is refused
before a byte is sent. :func:`harvest.net.make_session` mounts it unless ``allow_private_hosts`` is set.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from harvest.errors import HarvestError


class BlockedHostError(HarvestError):
    """A connection reached an address that is not public (private, loopback, link-local, …) while those are refused.

    Deliberately not an ``OSError``: urllib3 would wrap an ``OSError`` into a retryable connection error,
    and a refused host must never be retried.
    """


def is_blocked_address(address: str) -> bool:
    """Whether an IP address is one a crawler must not reach: any that is not globally reachable (private, loopback,
    link-local, reserved, and the shared 100.64.0.0/10, which ``is_private`` leaves out and where some clouds put
    their metadata service), IPv6 site-local, or multicast. An IPv6 address that carries an IPv4 one (IPv4-mapped,
    6to4, NAT64) is judged as that IPv4 address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_site_local:  # fec0::/10, the deprecated IPv6 private range, which is_private leaves out
            return True
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix: the IPv4 host in the last 32 bits


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, judged in its place: IPv4-mapped (``::ffff:a.b.c.d``), 6to4
    (``2002:AABB:CCDD::``, routed to the IPv4 host it names) and NAT64 (``64:ff9b::a.b.c.d``, how an IPv6-only
    network reaches every IPv4 site: refused as a whole, such a network could harvest nothing)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


class _GuardMixin:
    """Checks the peer address of every new socket (after DNS, so rebinding tricks are caught too)."""

    host: str

    def _new_conn(self) -> Any:
        sock = super()._new_conn()  # type: ignore[misc]
        peer = sock.getpeername()[0]
        if is_blocked_address(peer):
            sock.close()
            raise BlockedHostError(
                f"refused {self.host} ({peer}): not a public address (private, loopback, link-local, shared or "
                "reserved); pass --allow-private-hosts to allow it"
            )
        return sock


class _GuardedHTTPConnection(_GuardMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class GuardedAdapter(HTTPAdapter):
    """An adapter whose connection pools refuse blocked peer addresses."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}
