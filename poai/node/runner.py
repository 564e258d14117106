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
        self.miner = Miner(
            service.chain, model, address, mempool=service.mempool, batch=batch,
            submit=lambda data: service.submit_block(data, proof_checked=True),
        )
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
        m.attempts, m.attempts_per_s = self._attempts_before + stats.attempts, stats.rate
        while m.blocks_found - self._found_before < len(stats.blocks):
            block = stats.blocks[m.blocks_found - self._found_before]
            m.blocks_found += 1
            log.info("mined block %d %s", block.height, block.id.hex()[:16])

    def _run(self) -> None:
        from poai.errors import StoreError

        found = 0
        while not self.stop_event.is_set():
            self._found_before = self.service.mining.blocks_found
            self._attempts_before = self.service.mining.attempts
            try:
                stats = self.miner.mine(
                    blocks=None if self.blocks is None else self.blocks - found,
                    on_progress=self._progress,
                    should_stop=self.stop_event.is_set,
                    should_pause=self.service.verifying.is_set,
                )
                found += len(stats.blocks)
                if self.blocks is not None and found >= self.blocks:
                    log.info("mined %d block(s); mining stops, the node goes on", self.blocks)
                    self.service.mining.enabled = False
                    return
            except StoreError as exc:  # e.g. the database stayed locked: not fatal, try again
                log.warning("miner: %s; retrying in 1 s", exc)
                self.stop_event.wait(1.0)
            except BaseException as exc:  # reported by the node, which then stops
                self.error = exc
                log.exception("miner stopped")
                return

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
    from poai.app import listen_error
    from poai.node.scheduler import VerifyScheduler

    service.scheduler = VerifyScheduler(service)
    service.scheduler.start()
    net = P2PNode(service, listen=listen, peers=list(peers))
    service.net = net
    runner = None
    started = False
    try:
        try:
            await net.start()
        except OSError as exc:  # a busy or foreign address: one line, not a traceback
            raise listen_error(listen[0], listen[1], exc) from None
        if rpc is not None:
            from poai.rpc.server import serve

            try:
                runner = await serve(service, rpc[0], rpc[1], guard=rpc_guard)  # None: loopback names only
            except OSError as exc:
                raise listen_error(rpc[0], rpc[1], exc) from None
            log.info("RPC and explorer on http://%s:%d/", rpc[0], rpc[1])
        if miner is not None:
            miner.start()
        started = True
        if on_ready is not None:
            on_ready(net)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            if miner is not None and miner.error is not None:
                break
    finally:
        if started:
            log.info("shutting down")
        if miner is not None and miner.thread.is_alive():
            await asyncio.to_thread(miner.stop)
        await net.stop()
        await asyncio.to_thread(service.scheduler.stop)
        if runner is not None:
            await runner.cleanup()
        service.executor.shutdown(wait=True)
        service.store.close()
