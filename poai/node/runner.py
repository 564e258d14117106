"""``poai node run``: one full node that serves, mines and gossips.

The event loop runs the peer layer and the RPC/explorer server; the miner
(if enabled) runs in its own thread; blocks from peers are verified in a
worker thread.  SIGINT/SIGTERM stop everything cleanly: the miner finishes
its batch, peers are closed, the database is left at a block boundary (it
always is: every change is one transaction), and a restart resumes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading

from poai.node.service import NodeService

log = logging.getLogger("poai.node")


class MinerThread:
    def __init__(
        self, service: NodeService, model, address: bytes, *, batch: int = 4, blocks: int | None = None
    ) -> None:
        from poai.node.miner import Miner

        self.service = service
        self.miner = Miner(service.chain, model, address, mempool=service.mempool, batch=batch)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="poai-miner", daemon=True)
        self.error: BaseException | None = None
        self.blocks = blocks
        service.mining.enabled = True
        service.mining.address = address
        service.mining.batch = batch

    def start(self) -> None:
        self.thread.start()

    def _progress(self, stats) -> None:
        m = self.service.mining
        m.attempts, m.attempts_per_s = stats.attempts, stats.rate
        while m.blocks_found < len(stats.blocks):
            block = stats.blocks[m.blocks_found]
            m.blocks_found += 1
            log.info("mined block %d %s", block.height, block.id.hex()[:16])
            if self.service.relay_block is not None:
                self.service.relay_block(block)

    def _run(self) -> None:
        try:
            self.miner.mine(
                blocks=self.blocks,
                on_progress=self._progress,
                should_stop=self.stop_event.is_set,
                should_pause=self.service.verifying.is_set,
            )
            if self.blocks is not None:
                log.info("mined %d block(s); mining stops, the node goes on", self.blocks)
                self.service.mining.enabled = False
        except BaseException as exc:  # reported by the node, which then stops
            self.error = exc
            log.exception("miner stopped")

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=60)


async def run_node(
    service: NodeService,
    *,
    listen=None,
    peers=(),
    rpc=None,
    rpc_guard=None,
    miner: MinerThread | None = None,
    stop: asyncio.Event | None = None,
    on_ready=None,
) -> None:
    from poai.net.p2p import P2PNode

    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    net = P2PNode(service, listen=listen, peers=list(peers))
    service.net = net
    await net.start()
    runner = None
    if rpc is not None:
        from poai.rpc.server import serve

        runner = await serve(service, rpc[0], rpc[1], guard=rpc_guard)  # guard None: loopback names only
        log.info("RPC and explorer on http://%s:%d/", rpc[0], rpc[1])
    if miner is not None:
        miner.start()
    if on_ready is not None:
        on_ready(net)
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            if miner is not None and miner.error is not None:
                break
    finally:
        log.info("shutting down")
        if miner is not None:
            await asyncio.to_thread(miner.stop)
        await net.stop()
        if runner is not None:
            await runner.cleanup()
        service.store.close()
