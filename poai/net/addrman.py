"""The address manager: which peer addresses this node keeps and dials.

Two kinds of entry:
  * operator-given (``--peer``, ``$POAI_SEEDS``, the network's seed list,
    ``P2PNode.add_peer``): kept as given, hostnames included (resolved only
    when dialled), never evicted;
  * learned (``addr`` messages, a peer's ``version`` listen port): an IP
    literal with a port in 1..65535 in a routable range, or nothing.

Refusal reasons (stable strings; tests and the refusal counters use them):
  addr-port           port outside 1..65535
  addr-hostname       not an IP literal (names are never learned from peers;
                      so are "127.1"-style shorthands, which a resolver would
                      otherwise expand)
  addr-scoped         an IPv6 literal with a zone id ("fe80::1%eth0")
  addr-unspecified    0.0.0.0, ::
  addr-metadata       the cloud metadata services 169.254.169.254, fd00:ec2::254
  addr-link-local     169.254/16, fe80::/10
  addr-loopback       127/8, ::1, unless this node itself listens on loopback
  addr-private        RFC 1918 (10/8, 172.16/12, 192.168/16), fc00::/7, fec0::/10
  addr-cgnat          100.64/10 (shared address space)
  addr-multicast      224/4, ff00::/8
  addr-broadcast      255.255.255.255
  addr-documentation  192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32,
                      and the benchmark ranges 198.18/15, 2001:2::/48
  addr-mapped         IPv6 forms that carry an IPv4 address (::ffff:0:0/96
                      mapped, ::/96 compatible, 64:ff9b::/96 NAT64, 2002::/16
                      6to4, 2001::/32 Teredo): a way to smuggle any of the
                      ranges above past an IPv4 check
  addr-reserved       everything else that is not globally routable (0/8,
                      240/4, 192.0.0/24, 192.88.99/24, IETF-reserved IPv6)
  addr-not-local      a routable address learned by a node that listens on
                      loopback (a local testnet dials only loopback)

Bounds: the table holds at most ``capacity`` entries (default 2048); when it
is full a new learned address evicts the oldest never-connected learned entry,
else the learned entry with the most failures, else it is dropped (counted as
"addr-table-full").  Each peer's ``addr`` flow passes a token bucket as in
Bitcoin Core (0.1 address/s, burst 1000); addresses beyond it are ignored and
counted.  A failed dial backs off exponentially (operator entries from 2 s up
to 10 s, learned ones from 30 s up to an hour).

``check_dial`` is the last line of defence: the dialler calls it right before
opening a connection, and it raises AddrRefused (with the reason above)
for anything that is neither operator-given nor acceptable as
a learned address under this node's mode, whatever path put it in the table.
"""

from __future__ import annotations

import ipaddress
import time
from collections import Counter
from dataclasses import dataclass

from poai.errors import PoaiError

CAPACITY = 2048
ADDR_RATE = 0.1          # addresses per second per peer (Bitcoin Core's MAX_ADDR_RATE_PER_SECOND)
ADDR_BURST = 1000.0      # bucket size: one full addr message
OPERATOR_BACKOFF = (2.0, 10.0)   # seconds: first retry, cap
LEARNED_BACKOFF = (30.0, 3600.0)

_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_V6_LOOPBACK = ipaddress.ip_address("::1")
_V4_NETS = [
    (ipaddress.ip_network(n), reason)
    for n, reason in (
        ("0.0.0.0/8", "addr-reserved"),
        ("169.254.0.0/16", "addr-link-local"),
        ("10.0.0.0/8", "addr-private"),
        ("172.16.0.0/12", "addr-private"),
        ("192.168.0.0/16", "addr-private"),
        ("100.64.0.0/10", "addr-cgnat"),
        ("224.0.0.0/4", "addr-multicast"),
        ("255.255.255.255/32", "addr-broadcast"),
        ("192.0.2.0/24", "addr-documentation"),
        ("198.51.100.0/24", "addr-documentation"),
        ("203.0.113.0/24", "addr-documentation"),
        ("198.18.0.0/15", "addr-documentation"),
        ("240.0.0.0/4", "addr-reserved"),
        ("192.0.0.0/24", "addr-reserved"),
        ("192.88.99.0/24", "addr-reserved"),
    )
]
_V6_NETS = [
    (ipaddress.ip_network(n), reason)
    for n, reason in (
        ("::ffff:0:0/96", "addr-mapped"),
        ("::ffff:0:0:0/96", "addr-mapped"),
        ("64:ff9b::/96", "addr-mapped"),
        ("64:ff9b:1::/48", "addr-mapped"),
        ("2002::/16", "addr-mapped"),
        ("2001::/32", "addr-mapped"),
        ("fe80::/10", "addr-link-local"),
        ("fc00::/7", "addr-private"),
        ("fec0::/10", "addr-private"),
        ("ff00::/8", "addr-multicast"),
        ("2001:db8::/32", "addr-documentation"),
        ("2001:2::/48", "addr-documentation"),
        ("::/96", "addr-mapped"),
    )
]


class AddrRefused(PoaiError):
    """An address this node must not dial; ``reason`` is one of the names above."""

    reason = "addr-refused-dial"


def parse_ip(host: str):
    """The IP address a literal names, or None (hostnames, shorthands, zone ids)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def classify(host: str, port: int, *, local: bool) -> str | None:
    """Why a learned address is refused, or None when it is acceptable.
    local: this node listens on loopback (a local testnet), so loopback is
    accepted and routable addresses are not."""
    if type(port) is not int or not 1 <= port <= 65535:
        return "addr-port"
    if "%" in host:
        return "addr-scoped"
    ip = parse_ip(host)
    if ip is None:
        return "addr-hostname"
    if ip.is_unspecified:
        return "addr-unspecified"
    if ip == _V6_LOOPBACK or (ip.version == 4 and ip.is_loopback):
        return None if local else "addr-loopback"
    if ip.version == 6 and any(ip in net for net, reason in _V6_NETS if reason == "addr-mapped"):
        return "addr-mapped"  # before any property test that might look through to the IPv4 part
    if ip in _METADATA:
        return "addr-metadata"
    for net, reason in _V4_NETS if ip.version == 4 else _V6_NETS:
        if ip in net:
            return reason
    if not ip.is_global:
        return "addr-reserved"
    return "addr-not-local" if local else None


def netgroup(host: str) -> str:
    """The group whose inbound connections are counted together: IPv4 /16,
    IPv6 /32, an IPv4-mapped IPv6 address as its IPv4 /16; loopback (and any
    text that is not an IP) is its own group, so local testnets on distinct
    127.x addresses are not lumped together."""
    ip = parse_ip(host)
    if ip is None or ip.is_loopback:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.version == 4:
        return str(ipaddress.ip_network(f"{ip}/16", strict=False))
    return str(ipaddress.ip_network(f"{ip}/32", strict=False))


def ban_key(host: str) -> str:
    """The key bans are kept under: the IP address itself (an IPv4-mapped IPv6
    address as its IPv4 form, so one host cannot evade a ban by family)."""
    ip = parse_ip(host)
    if ip is None:
        return host
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class TokenBucket:
    """Tokens refill at ``rate`` per second up to ``burst``; take() spends one."""

    def __init__(self, rate: float = ADDR_RATE, burst: float = ADDR_BURST, clock=time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate, burst, clock
        self.tokens = burst
        self.stamp = clock()

    def take(self, n: float = 1.0) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass
class Entry:
    host: str
    port: int
    operator: bool
    source: str            # "operator", or the ban key of the peer that told us
    added: float
    last_try: float = 0.0
    last_success: float = 0.0
    failures: int = 0

    @property
    def tried(self) -> bool:
        return self.last_success > 0.0

    def ready_at(self) -> float:
        if not self.failures:
            return self.last_try + (OPERATOR_BACKOFF[0] if self.operator else LEARNED_BACKOFF[0]) * (
                self.last_try > 0
            )
        first, cap = OPERATOR_BACKOFF if self.operator else LEARNED_BACKOFF
        return self.last_try + min(cap, first * 2 ** (self.failures - 1))


class AddrMan:
    """The bounded address table (one per P2PNode; used from the event loop only)."""

    def __init__(self, *, local: bool, capacity: int = CAPACITY, clock=time.monotonic) -> None:
        self.local = local
        self.capacity = capacity
        self.clock = clock
        self.entries: dict[tuple[str, int], Entry] = {}
        self.refused: Counter[str] = Counter()   # reason -> addresses refused
        self.rate_limited = 0                     # addresses ignored by the token bucket
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, addr) -> bool:
        return tuple(addr) in self.entries

    def add_operator(self, host: str, port: int) -> Entry:
        """An address the operator gave: kept as given (a hostname is resolved when dialled)."""
        e = self.entries.get((host, port))
        if e is None:
            e = self.entries[(host, port)] = Entry(host, port, True, "operator", self.clock())
            self._shrink()
        else:
            e.operator, e.source = True, "operator"
        return e

    def add_learned(self, host: str, port: int, source: str) -> str | None:
        """Consider an address a peer told us: the refusal reason, or None
        (stored, or already known)."""
        why = classify(host, port, local=self.local)
        if why is not None:
            self.refused[why] += 1
            return why
        host = str(parse_ip(host))  # one spelling per address (IPv6 has many)
        if (host, port) in self.entries:
            return None
        if len(self.entries) >= self.capacity and not self._evict_one():
            self.refused["addr-table-full"] += 1
            return "addr-table-full"
        self.entries[(host, port)] = Entry(host, port, False, source, self.clock())
        return None

    def receive(self, addrs, source: str, bucket: TokenBucket) -> tuple[int, int]:
        """One addr message from peer ``source``: (stored or known, refused or
        ignored).  The bucket is checked first: a flooding peer costs no
        classification work beyond its allowance."""
        ok = bad = 0
        for host, port in addrs:
            if not bucket.take():
                self.rate_limited += 1
                bad += 1
                continue
            if self.add_learned(host, port, source) is None:
                ok += 1
            else:
                bad += 1
        return ok, bad

    def _evict_one(self) -> bool:
        learned = [e for e in self.entries.values() if not e.operator]
        never = [e for e in learned if not e.tried]
        if never:
            victim = min(never, key=lambda e: e.added)
        elif learned:
            victim = max(learned, key=lambda e: (e.failures, -e.last_success))
        else:
            return False
        del self.entries[(victim.host, victim.port)]
        self.evicted += 1
        return True

    def _shrink(self) -> None:
        while len(self.entries) > self.capacity and self._evict_one():
            pass

    # --- the connector's side ---------------------------------------------------
    def check_dial(self, host: str, port: int) -> None:
        """Raise AddrRefused unless (host, port) may be dialled: operator-given,
        or acceptable as a learned address under this node's mode."""
        e = self.entries.get((host, port))
        if e is not None and e.operator:
            return
        why = classify(host, port, local=self.local)
        if why is not None:
            raise AddrRefused(f"refusing to dial {host}:{port}", reason=why)

    def select(self, n: int, skip=lambda addr: False) -> list[tuple[str, int]]:
        """Up to n addresses to dial now: operator entries first, then ones that
        connected before, then new ones; entries in back-off and those ``skip``
        rejects are left out."""
        now = self.clock()
        ready = [e for e in self.entries.values() if e.ready_at() <= now and not skip((e.host, e.port))]
        ready.sort(key=lambda e: (not e.operator, not e.tried, e.failures, e.last_try, e.added))
        return [(e.host, e.port) for e in ready[:n]]

    def attempt(self, addr) -> None:
        e = self.entries.get(tuple(addr))
        if e is not None:
            e.last_try = self.clock()

    def failed(self, addr) -> None:
        e = self.entries.get(tuple(addr))
        if e is not None:
            e.last_try = self.clock()
            e.failures += 1

    def connected(self, addr) -> None:
        e = self.entries.get(tuple(addr))
        if e is not None:
            e.last_try = e.last_success = self.clock()
            e.failures = 0

    def forget(self, addr) -> None:
        """Drop a learned entry (an address that turned out to be this node)."""
        e = self.entries.get(tuple(addr))
        if e is not None and not e.operator:
            del self.entries[tuple(addr)]

    def gossip(self, limit: int) -> list[list]:
        """Addresses to answer getaddr with: learned entries (valid by
        construction) and operator IP literals that pass the same check,
        connected ones first."""
        out = [
            e for e in self.entries.values()
            if not e.operator or classify(e.host, e.port, local=self.local) is None
        ]
        out.sort(key=lambda e: (not e.tried, -e.last_success, -e.added))
        return [[e.host, e.port] for e in out[:limit]]

    def stats(self) -> dict:
        return {
            "entries": len(self.entries),
            "operator": sum(e.operator for e in self.entries.values()),
            "tried": sum(e.tried for e in self.entries.values()),
            "refused": dict(self.refused),
            "rate_limited": self.rate_limited,
            "evicted": self.evicted,
        }
