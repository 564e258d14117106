"""The node: chain state manager, mempool and miner over the store."""
