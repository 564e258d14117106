"""poai: a blockchain whose proof of work is exact, integer-only LLM inference.

Layering (each layer imports only those below it):
``engine`` -> ``pow`` -> ``chain`` -> ``store``/``wallet`` -> ``node`` ->
``net``/``rpc`` -> ``cli``; ``models`` (registry, pull, verify) sits beside
``engine``; ``measure`` (selftest, bench, fidelity, the llama.cpp adapter) uses
``engine`` and ``models`` and is used only by ``cli``.
"""

__version__ = "0.1.0"

# The engine protocol: the version of everything in the engine that feeds a
# hash (arithmetic, tables, tokenizer, conversion rules).  Any change to those
# bumps it, together with the golden vectors in tests/vectors/.  The other two
# protocols have their own numbers: poai.chain.params.CHAIN_PROTOCOL_VERSION
# (headers, blocks, rules) and poai.net.protocol.WIRE_PROTOCOL_VERSION (peers).
ENGINE_PROTOCOL_VERSION = 4
