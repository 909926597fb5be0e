"""Which local user owns the other end of a loopback TCP connection (Linux).

Why: the server signs with the card of the user who runs it, so another account on the same computer
must not be able to use it. A loopback connection has both ends in this kernel, and the kernel knows the
owner of the client's socket: the socket whose local end is the client's address and port and whose
remote end is ours.

Two ways to ask, both exact about that one socket:

* ``sock_diag`` netlink (what ``ss`` uses): the kernel looks the socket up in its hash table, about
  0.03 ms, unprivileged;
* ``/proc/net/tcp`` and ``/proc/net/tcp6``, the fallback where netlink is unavailable. Reading them makes
  the kernel walk its whole socket hash table, which cost 9 ms and 25 ms per read on the test VM: too slow
  to be the first choice when every accepted connection is looked up.

Nothing is cached: each connection is looked up once, when it is accepted, so a port later reused by
another user can never inherit an earlier answer.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from pathlib import Path

TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
TIME_WAIT = b"06"  # a closed socket the kernel keeps for a while, owned by nobody (uid 0)

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NO_COOKIE = 0xFFFFFFFF  # INET_DIAG_NOCOOKIE: find the socket by its addresses alone
UID_OFFSET = 16 + 4 + 48 + 12  # nlmsghdr, then inet_diag_msg: family..retrans, sockid, expires/rqueue/wqueue


class LookupUnavailable(Exception):
    """This system offers no way to find a socket's owner."""


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _addresses(peer: tuple[str, int], local: tuple[str, int]) -> tuple[Address, Address]:
    """The two addresses, IPv4-mapped IPv6 ones as IPv4 (the kernel hashes both forms alike)."""
    result = []
    for host, _ in (peer, local):
        address = ipaddress.ip_address(host.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        result.append(address)
    return result[0], result[1]


def netlink_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The owner of the client's socket via sock_diag, or None if the kernel has no such socket."""
    client, server = _addresses(peer, local)
    family = socket.AF_INET if client.version == 4 else socket.AF_INET6
    request = (struct.pack("=BBBxI", family, socket.IPPROTO_TCP, 0, 0xFFFFFFFF)
               + struct.pack(">HH", peer[1], local[1]) + client.packed.ljust(16, b"\0")
               + server.packed.ljust(16, b"\0") + struct.pack("=III", 0, NO_COOKIE, NO_COOKIE))
    message = struct.pack("=IHHII", 16 + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST, 1, 0) + request
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_SOCK_DIAG) as sock:
            sock.settimeout(1.0)
            sock.sendto(message, (0, 0))
            answer = sock.recv(8192)
    except (OSError, AttributeError) as exc:  # AttributeError: no AF_NETLINK on this platform
        raise LookupUnavailable(f"sock_diag: {exc}") from None
    if len(answer) < 20:
        raise LookupUnavailable("sock_diag: short answer")
    if struct.unpack_from("=H", answer, 4)[0] == NLMSG_ERROR:
        code = -struct.unpack_from("=i", answer, 16)[0]
        if code == errno.ENOENT:
            return None
        raise LookupUnavailable(f"sock_diag: {os.strerror(code)}")
    if len(answer) < UID_OFFSET + 4:
        raise LookupUnavailable("sock_diag: short answer")
    return struct.unpack_from("=I", answer, UID_OFFSET)[0]


def _hex(address: Address) -> str:
    # The kernel prints addresses as native-endian 32-bit words.
    return "".join(f"{word:08X}" for word in struct.unpack(f"={len(address.packed) // 4}I", address.packed))


def proc_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The owner of the client's socket from /proc/net/tcp{,6}: the row whose local end is the client's
    address:port and whose remote end is ours. None if no table lists it."""
    client, server = _addresses(peer, local)
    rows: list[tuple[Path, str, str]] = []
    if client.version == 4:
        rows.append((TABLES[0], _hex(client), _hex(server)))
        # A dual-stack client socket lists the same connection with IPv4-mapped addresses in tcp6.
        client, server = ipaddress.IPv6Address(f"::ffff:{client}"), ipaddress.IPv6Address(f"::ffff:{server}")
    rows.append((TABLES[1], _hex(client), _hex(server)))
    found_table = False
    for table, ours, theirs in rows:
        needle = f" {ours}:{peer[1]:04X} {theirs}:{local[1]:04X} ".encode()
        try:
            data = table.read_bytes()
        except OSError:
            continue
        found_table = True
        start = data.find(needle)
        while start != -1:
            end = data.find(b"\n", start)
            fields = data[start + len(needle):end if end != -1 else None].split()
            # st, tx_queue:rx_queue, tr:tm->when, retrnsmt, uid, ...
            if len(fields) > 4 and fields[0] != TIME_WAIT and fields[4].isdigit():
                return int(fields[4])
            start = data.find(needle, start + 1)
    if not found_table:
        raise LookupUnavailable("no /proc/net/tcp")
    return None


def peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the client's socket of the connection ``peer`` -> ``local`` (None: no such socket,
    e.g. it closed already). Raises LookupUnavailable where neither netlink nor /proc can tell."""
    try:
        return netlink_uid(peer, local)
    except LookupUnavailable:
        return proc_uid(peer, local)

