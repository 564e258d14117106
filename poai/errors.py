"""The one exception tree of poai.

Every error poai raises on purpose derives from :class:`PoaiError`.  Errors
that decide validity carry a stable ``reason`` string that tests assert on;
only the CLI layer turns errors into exit codes.
"""

from __future__ import annotations


class PoaiError(Exception):
    """Root of every poai error."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


# --- models: registry, cache, downloads -------------------------------------


class ModelError(PoaiError):
    reason = "model-error"


class UnknownModelError(ModelError):
    reason = "unknown-model"


class UnvettedModelError(ModelError):
    """A file whose sha256 is not pinned in models.lock."""

    reason = "unvetted-model"


class ModelNotFoundError(ModelError):
    """A vetted model that is not in the local cache."""

    reason = "model-not-cached"


class ModelSourceError(ModelError):
    """Every source of a model failed (unreachable, wrong bytes, ...)."""

    reason = "model-source-failed"


# --- engine: GGUF reading, conversion and inference -------------------------


class EngineError(PoaiError):
    reason = "engine-error"


class GGUFFormatError(EngineError):
    """A malformed or truncated GGUF file."""

    reason = "gguf-malformed"


class UnsupportedModelError(EngineError):
    """An architecture, tensor type or hyper-parameter the engine lacks."""

    reason = "gguf-unsupported"


class EngineRangeError(EngineError):
    """A value left the range whose overflow bound the arithmetic proves.

    Deterministic: every implementation raises it on the same input, so it is
    a well-defined outcome, never silent wrap-around.
    """

    reason = "engine-range"


class KernelUnavailableError(EngineError, ImportError):
    """The requested kernel is not built or not supported by this CPU.

    Also an ImportError: an unbuilt extension is an import failure, and says
    how to build it.
    """

    reason = "kernel-unavailable"


class ConversionMismatchError(EngineError):
    """The converted model's content hash differs from the one models.lock pins.

    This engine converts weights by other rules than the network: its results
    would not be accepted, so it refuses to run the model.
    """

    reason = "conversion-mismatch"


class TokenizerError(EngineError):
    reason = "tokenizer-error"


# --- chain: consensus validation (pure, no I/O) -----------------------------


class ChainError(PoaiError):
    reason = "chain-error"


class UnknownNetworkError(ChainError, ValueError):
    """A network name that is not main, test or dev."""

    reason = "unknown-network"


class ValidationError(ChainError):
    """A block, header or transaction breaks a consensus rule.

    ``reason`` is one of the stable strings listed in docs/PROTOCOL.md; tests
    and peers rely on it, so it never changes for the same rule.
    """

    reason = "invalid"


class DecodeError(ValidationError):
    """Bytes that are not the canonical encoding of the object they claim to be."""

    reason = "malformed"


class TxError(ValidationError):
    """A transaction that is invalid on its own or against the state."""

    reason = "tx-invalid"


class MempoolError(ChainError):
    """A valid transaction the mempool declines (full, fee too low, ...)."""

    reason = "mempool-reject"


class StoreError(PoaiError):
    """The block store: an unopenable, foreign or inconsistent database."""

    reason = "store-error"


# --- wallet: keys and keystores ---------------------------------------------


class WalletError(PoaiError):
    reason = "wallet-error"


class AddressError(WalletError):
    """Not a 20-byte hex address, or a mixed-case one whose EIP-55 checksum fails."""

    reason = "bad-address"


class KeystoreError(WalletError):
    """A keystore file that is malformed, or a wrong password."""

    reason = "keystore-error"
