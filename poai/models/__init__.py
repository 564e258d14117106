"""Vetted models: the ``models.lock`` registry, the local cache, downloads.

``poai.models.registry`` loads the pins and maps names, aliases and local
files onto them (no network, cheap to import); ``poai.models.pull`` fetches
files into the cache and re-checks them.  This sits beside ``engine``: the
engine asks the registry which file to load and never downloads anything.
"""

from poai.models.registry import (
    ModelEntry,
    ModelSource,
    Registry,
    cache_dir,
    cached_path,
    load_registry,
    resolve_model_file,
    sha256_file,
)

__all__ = [
    "ModelEntry",
    "ModelSource",
    "Registry",
    "cache_dir",
    "cached_path",
    "load_registry",
    "resolve_model_file",
    "sha256_file",
]
