"""poai: a blockchain whose proof of work is exact, integer-only LLM inference.

Layering (each layer imports only those below it):
``engine`` -> ``pow`` -> ``chain`` -> ``store``/``wallet`` -> ``node`` ->
``net``/``rpc`` -> ``cli``; ``models`` (registry, pull, verify) sits beside
``engine``.
"""

__version__ = "0.1.0"

# Version of everything that feeds a hash (engine arithmetic, tables,
# tokenizer, conversion rules).  Any change to those is a protocol change and
# bumps this number together with the golden vectors in tests/vectors/.
PROTOCOL_VERSION = 4
