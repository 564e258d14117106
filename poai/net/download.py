"""Block download bookkeeping: what each peer was asked for, since when, and
who announced each wanted block (so a stalled download moves elsewhere).

Bounds (all per node unless said): a peer has at most MAX_IN_FLIGHT block
requests outstanding and MAX_TX_IN_FLIGHT transaction requests; a peer's
queue of blocks still to ask for holds at most MAX_WANTED ids and all queues
together MAX_WANTED_TOTAL; the announcer table remembers MAX_ANNOUNCED block
ids with at most MAX_ANNOUNCERS peers each (least recently announced ids go
first).

A request stalls when it is older than BLOCK_TIMEOUT seconds, or older than
a third of that while at least OVERTAKE blocks requested later from the same
peer have arrived (blocks are asked in chain order, so a peer that keeps
delivering the others while holding one back is withholding it).  The clocks
stop while this node has BACKLOG or more received blocks waiting for
verification: a peer's read loop then waits for room in the queue, so its
late deliveries are this node's delay, not the peer's.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict

import msgpack

MAX_IN_FLIGHT = 16
MAX_TX_IN_FLIGHT = 100
MAX_WANTED = 4096
MAX_WANTED_TOTAL = 8192
MAX_ANNOUNCED = 8192
MAX_ANNOUNCERS = 8
# seconds; $POAI_P2P_BLOCK_TIMEOUT shortens it for functional tests of stalling peers
BLOCK_TIMEOUT = float(os.environ.get("POAI_P2P_BLOCK_TIMEOUT", "30"))
TX_TIMEOUT = 60.0
HEADERS_TIMEOUT = 60.0
OVERTAKE = 2
BACKLOG = MAX_IN_FLIGHT  # queued blocks that suspend the stall clocks
MAX_STALLS = 3  # stalled downloads before the peer is disconnected


class InFlight:
    """One peer's outstanding block requests: id -> (asked at, order, overtaken)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.items: dict[bytes, list] = {}
        self.seq = 0

    def __contains__(self, bid) -> bool:
        return bid in self.items

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(list(self.items))

    def add(self, bid: bytes) -> None:
        if bid not in self.items:
            self.seq += 1
            self.items[bid] = [self.clock(), self.seq, 0]

    def discard(self, bid: bytes) -> bool:
        """The block arrived (or will not): forget the request.  Every older
        request still open is overtaken once more.  True when it was open."""
        item = self.items.pop(bid, None)
        if item is None:
            return False
        for other in self.items.values():
            if other[1] < item[1]:
                other[2] += 1
        return True

    def pause(self, seconds: float) -> None:
        """Stop the clocks for a while: time this node spent backlogged with
        blocks to verify is not the peer's delay."""
        for item in self.items.values():
            item[0] += seconds

    def stalled(self, timeout: float = None) -> list[bytes]:
        timeout = BLOCK_TIMEOUT if timeout is None else timeout
        now = self.clock()
        return [
            bid for bid, (asked, _, overtaken) in self.items.items()
            if now - asked > timeout or (overtaken >= OVERTAKE and now - asked > timeout / 3)
        ]


class Announcers:
    """Which peers announced (inv or headers) each wanted block id, bounded."""

    def __init__(self) -> None:
        self.table: OrderedDict[bytes, list] = OrderedDict()

    def note(self, bid: bytes, peer) -> None:
        peers = self.table.pop(bid, [])
        if peer not in peers:
            peers.append(peer)
            del peers[:-MAX_ANNOUNCERS]
        self.table[bid] = peers
        while len(self.table) > MAX_ANNOUNCED:
            self.table.popitem(last=False)

    def others(self, bid: bytes, exclude=None) -> list:
        return [p for p in self.table.get(bid, ()) if p is not exclude and not p.closed and p.ready]

    def drop(self, bid: bytes) -> None:
        self.table.pop(bid, None)

    def drop_peer(self, peer) -> None:
        for peers in self.table.values():
            if peer in peers:
                peers.remove(peer)


def peek_block_id(data: bytes) -> bytes | None:
    """The id of the block in a ``block`` payload, from its header alone (the
    transactions are not decoded); None when it does not parse (the block
    worker rejects it properly)."""
    from poai.chain.block import Header

    try:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=max(len(data), 1), max_str_len=0,
                                    max_map_len=0, max_ext_len=0)
        unpacker.feed(data)
        if unpacker.read_array_header() != 3:
            return None
        return Header.from_obj(unpacker.unpack()).id
    except Exception:  # garbage of any shape: not ours to judge here
        return None
