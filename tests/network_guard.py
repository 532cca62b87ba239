"""A socket guard for the test run: a connection outside the loopback fails the test.

"No network in tests" is enforced, not hoped: the autouse fixture in ``conftest.py`` replaces
``socket.socket.connect``/``connect_ex`` for every test. Local (Unix) sockets and the loopback
range (127.0.0.0/8, ::1, ``localhost``), which the dask tests and Qt use, stay allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any


class NetworkAccessError(AssertionError):
    """A test tried to reach an address outside this machine."""


def is_loopback(address: Any) -> bool:
    """Whether a socket address (``(host, port, ...)`` or a path) stays on this machine.

    >>> is_loopback(("127.0.0.1", 8786)), is_loopback(("::1", 1)), is_loopback("/tmp/x.sock")
    (True, True, True)
    >>> is_loopback(("192.0.2.1", 80)), is_loopback(("example.org", 443))
    (False, False)
    """
    if not isinstance(address, tuple):
        return True  # AF_UNIX path or abstract name
    host = address[0]
    if isinstance(host, bytes):
        host = host.decode()
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name other than localhost: it would need a DNS look-up


def guard(real: Callable[..., Any]) -> Callable[..., Any]:
    """``real`` (a socket's connect) wrapped to refuse addresses outside the loopback."""

    def guarded(sock: socket.socket, address: Any, *args: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_loopback(address):
            raise NetworkAccessError(
                f"a test tried to connect to {address!r}: tests must not use the network"
            )
        return real(sock, address, *args)

    guarded.__wrapped__ = real  # type: ignore[attr-defined]
    return guarded
