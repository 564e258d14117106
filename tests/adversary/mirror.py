"""A local mirror of the victim's chain, and the attacker's block crafting.

The mirror is a poai Store + ChainState in a temp directory, fed with the
victim's own blocks over the wire (getheaders, then getdata) and accepted
with ``proof_checked=True``: the test process never runs an inference.  From
its tip ``poai.node.miner.Miner.template()`` gives a correct next block
without a proof; the attacker then sets a random proof at or below the
target (it passes every cheap check; only an inference can reject it) and
grinds the seal.  Every other attack block is such a template with fields
changed through ``Header.with_`` / ``dataclasses.replace``, so fields the
chain protocol adds later are carried over untouched.

Costs the attacker pays are counted here: seal evaluations and their
seconds, and inferences (always 0).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from poai.chain.block import Block, Header, block_tx_root, grind_seal
from poai.chain.difficulty import compact_to_target
from poai.net import protocol as wire
from poai.net.download import MAX_IN_FLIGHT
from poai.node.chainstate import ChainState, ModelCache
from poai.node.miner import Miner
from poai.store import Store


class Mirror:
    def __init__(self, path, params, model, address: bytes) -> None:
        self.params = params
        self.model = model
        self.address = address
        models = ModelCache()
        models.put(model.entry.sha256, model)
        self.store = Store(path / "chain.db")
        self.chain = ChainState(self.store, params, models=models)
        self.seal_evaluations = 0  # seals tried by grind_seal, summed over every block crafted
        self.seal_seconds = 0.0

    def close(self) -> None:
        self.store.close()

    # --- following the victim -----------------------------------------------------------
    def locator(self) -> list[bytes]:
        from poai.net import serve
        from poai.node.reads import ChainReads

        return serve.locator(ChainReads(self.store, params=self.params))

    def sync(self, peer, timeout: float = 30.0) -> int:
        """Fetch and accept the victim's main chain beyond ours through ``peer``
        (a handshaken RawPeer); the number of blocks added."""
        added = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            peer.drain()
            peer.send("getheaders", self.locator(), bytes(32))
            msg = peer.recv(max(0.1, deadline - time.monotonic()), "headers")
            if msg is None:
                raise AssertionError("the victim sent no headers to the mirror's getheaders")
            ids = [Header.decode(raw).id for raw in msg.args[0]]
            want = [i for i in ids if not self.store.has_block(i)]
            # a node serves at most MAX_IN_FLIGHT blocks per getdata (the rest
            # is notfound): ask in chunks of that
            for start in range(0, len(want), MAX_IN_FLIGHT):
                chunk = want[start : start + MAX_IN_FLIGHT]
                peer.send("getdata", [[wire.INV_BLOCK, i] for i in chunk])
                got: dict[bytes, bytes] = {}
                while len(got) < len(chunk):
                    m = peer.recv(max(0.1, deadline - time.monotonic()), "block")
                    if m is None:
                        raise AssertionError(f"the victim sent {len(got)} of {len(chunk)} blocks asked for")
                    data = m.args[0]
                    got[Block.decode(data, self.params.max_block_bytes).id] = data
                for i in chunk:
                    if i in got:
                        self.chain.accept_block(got[i], proof_checked=True)
                        added += 1
            if len(msg.args[0]) < wire.MAX_HEADERS:
                return added
        raise AssertionError(f"mirror sync took longer than {timeout:.0f} s")

    def tip(self):
        return self.store.tip()

    def block_at(self, height: int) -> Block:
        return self.chain.block(self.store.main_id(height))

    def header_reason(self, header: Header) -> str | None:
        """The reason this tree's context-free header checks give (None: passes):
        proves a crafted block has exactly the defect a case means to send."""
        from poai.chain import validate
        from poai.errors import ValidationError

        try:
            validate.check_header_alone(header, self.params)
        except ValidationError as exc:
            return exc.reason
        return None

    # --- crafting -----------------------------------------------------------------------
    def template(self) -> tuple[Block, int]:
        """The correct next block on the mirror's tip (no proof) and its target."""
        return Miner(self.chain, self.model, self.address).template()

    @staticmethod
    def random_proof(target: int) -> bytes:
        """32 random bytes whose integer is at most ``target`` (a proof only inference can refute)."""
        while True:
            proof = os.urandom(32)
            if int.from_bytes(proof, "big") <= target:
                return proof

    def seal(self, header: Header, start: int = 0) -> Header:
        t0 = time.perf_counter()
        sealed = grind_seal(header, self.params.seal_bits, start=start)
        self.seal_seconds += time.perf_counter() - t0
        self.seal_evaluations += sealed.seal - start + 1
        return sealed

    def bad_proof_block(
        self, *, base: Block | None = None, target: int | None = None, **header_changes
    ) -> Block:
        """A block on the tip (or ``base``, a template) with a random proof <= target,
        ``header_changes`` applied, and the seal ground."""
        if base is None:
            base, target = self.template()
        target = compact_to_target(base.header.bits) if target is None else target
        h = base.header.with_(
            nonce=int.from_bytes(os.urandom(8), "big") >> 1, proof=self.random_proof(target)
        )
        return replace(base, header=self.seal(h.with_(**header_changes)))

    def reseal(self, block: Block) -> Block:
        """The same block with the next seal that passes the pre-filter."""
        return replace(block, header=self.seal(block.header, start=block.header.seal + 1))

    def with_coinbase(self, block: Block, **coinbase_changes) -> Block:
        """``block`` with its coinbase changed and the transaction root recomputed (no seal)."""
        cb = replace(block.coinbase, **coinbase_changes)
        h = block.header.with_(tx_root=block_tx_root(cb, block.txs))
        return replace(block, header=h, coinbase=cb)

    def on_parent(self, parent_id: bytes, *, now: int | None = None) -> tuple[Block, int]:
        """A template moved onto an older main-chain block ``parent_id``: header
        context (height, bits, time) right for that parent; the state root is the
        tip's (it is checked only after the work comparison)."""
        base, _ = self.template()
        parent = self.store.record(parent_id)
        height = parent.height + 1
        bits = self.chain.next_bits(parent)
        when = max(int(now if now is not None else time.time()), self.chain.mtp(parent) + 1)
        moved = self.with_coinbase(base, height=height, value=self.params.reward(height))
        h = moved.header.with_(prev_hash=parent_id, height=height, bits=bits, time=when)
        return replace(moved, header=h), compact_to_target(bits)
