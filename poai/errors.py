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
