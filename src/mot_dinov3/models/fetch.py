"""Fetching catalogue models into the weights folder, atomically.

A file streams to a temporary ``<file>.<random>.part`` beside its final name, its sha256 is checked where
the entry (or the caller) gives one, and only then is it renamed (``os.replace``) to the final name: a
failed, refused or interrupted download leaves neither a file nor a ``.part``. Hub entries go through
``huggingface_hub.snapshot_download`` into the Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mot_dinov3.errors import UserError
from mot_dinov3.models.catalogue import ModelEntry, file_path, get, is_cached

CHUNK = 1 << 20
TIMEOUT_S = 30.0
HF_PATTERNS = ["*.json", "*.txt", "*.safetensors"]  # config, processor, weights: not the tf / flax / onnx copies


@dataclass(frozen=True)
class Fetched:
    """The result of :func:`download`.

    Attributes:
        path: the weights file, or the model's folder in the Hugging Face cache.
        sha256: the file's sha256 (``None`` for hub models).
        verified: the sha256 matched a published (or given) checksum.
        downloaded: ``False`` when it was already there (nothing fetched).
    """

    path: str
    sha256: str | None
    verified: bool
    downloaded: bool


def sha256_of(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _direct(url: str) -> str:
    """A Google Drive ``uc?id=`` link with ``export=download&confirm=t``, so a large file comes without
    the virus-scan page; other URLs unchanged."""
    parts = urllib.parse.urlsplit(url)
    if parts.netloc != "drive.google.com" or parts.path != "/uc":
        return url
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.setdefault("export", "download")
    query.setdefault("confirm", "t")
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__


def download(
    name: str,
    force: bool = False,
    url: str | None = None,
    sha256: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> Fetched:
    """Fetch catalogue model ``name`` (a no-op when it is already there, unless ``force``).

    Args:
        name: catalogue name.
        force: download again even if the file is there.
        url: download from here instead of the entry's URL (a mirror).
        sha256: the expected checksum (default: the entry's published one, if any).
        progress: called with (bytes so far, total bytes or ``None``) while a file streams.

    Raises:
        UserError: no URL, unreachable or offline, an HTTP error, a cut-off download, a web page instead of
            the file, or a checksum mismatch; the message names the URL and where to put the file by hand.
    """
    entry = get(name)
    if entry.hf_id is not None:
        return _download_hub(entry, force)
    target = file_path(entry)
    expected = (sha256 or entry.sha256 or "").lower() or None
    if not force and target.is_file():
        digest = sha256_of(target) if expected else None
        if expected and digest != expected:
            raise UserError(
                f"model {name!r}: {target} does not match its sha256 ({digest} != {expected}); "
                "delete it or download again with force=True"
            )
        return Fetched(str(target), digest, bool(expected), downloaded=False)
    source = url or entry.url
    if not source:
        raise UserError(f"model {name!r} has no public download ({entry.source}); put {entry.file} at {target} by hand")
    if not source.startswith(("http://", "https://")):
        raise UserError(f"url={source!r}: not an http(s) URL")
    digest = _fetch(entry, source, target, expected, progress)
    return Fetched(str(target), digest, bool(expected), downloaded=True)


def _fetch(
    entry: ModelEntry,
    url: str,
    target: Path,
    expected: str | None,
    progress: Callable[[int, int | None], None] | None,
) -> str:
    manual = f"download {url} by hand and put it at {target}"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".part")
    except OSError as exc:
        raise UserError(f"model {entry.name!r}: cannot write to {target.parent} ({exc})") from exc
    done = False
    try:
        h = hashlib.sha256()
        size = 0
        request = urllib.request.Request(_direct(url), headers={"User-Agent": "mot-dinov3"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as resp:
            if "text/html" in (resp.headers.get("Content-Type") or ""):
                raise UserError(
                    f"model {entry.name!r}: {url} answered with a web page, not the file "
                    f"(a login or confirmation page?); {manual}"
                )
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            for block in iter(lambda: resp.read(CHUNK), b""):
                out.write(block)
                h.update(block)
                size += len(block)
                if progress is not None:
                    progress(size, total)
            if total is not None and size != total:
                raise UserError(f"model {entry.name!r}: download cut off at {size} of {total} bytes; {manual}")
        digest = h.hexdigest()
        if expected and digest != expected:
            raise UserError(
                f"model {entry.name!r}: sha256 mismatch for {url} ({digest} != {expected}): file refused; {manual}"
            )
        os.replace(part, target)
        done = True
        return digest
    except UserError:
        raise
    except (OSError, ValueError, EOFError, http.client.HTTPException) as exc:  # URLError, timeouts, IncompleteRead
        raise UserError(f"model {entry.name!r}: cannot download {url} ({_reason(exc)}); {manual}") from exc
    finally:
        if not done:
            Path(part).unlink(missing_ok=True)


def _download_hub(entry: ModelEntry, force: bool) -> Fetched:
    from mot_dinov3.features import hub

    hf_id = str(entry.hf_id)
    page = f"https://huggingface.co/{hf_id}"
    manual = (
        f"download it where the Hub is reachable (huggingface-cli download {hf_id}) and copy the Hugging Face "
        f"cache (HF_HOME), or pass a local model folder as embed_model=PATH"
    )
    if not force and is_cached(entry):
        return Fetched(_hub_folder(hf_id) or hf_id, None, False, downloaded=False)
    if not hub.hub_reachable():
        raise UserError(f"model {entry.name!r}: the Hugging Face Hub is unreachable (offline?) for {page}; {manual}")
    from huggingface_hub import snapshot_download

    token = hub.hf_token()
    try:
        folder = snapshot_download(hf_id, token=token, allow_patterns=HF_PATTERNS, force_download=force)
        if not any(Path(folder).glob("*.safetensors")):  # older repositories: PyTorch .bin weights only
            folder = snapshot_download(hf_id, token=token, allow_patterns=["*.bin"], force_download=force)
    except Exception as exc:
        kind = hub.classify_load_error(exc)
        if kind == hub.GATED:
            raise UserError(
                f"model {entry.name!r} is gated: accept its license at {page} and set HF_TOKEN (e.g. in .env)"
            ) from exc
        raise UserError(f"model {entry.name!r}: cannot download {page} ({_reason(exc)}); {manual}") from exc
    return Fetched(str(folder), None, False, downloaded=True)


def _hub_folder(hf_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        config = try_to_load_from_cache(hf_id, "config.json")
    except Exception:
        return None
    return str(Path(config).parent) if isinstance(config, str) else None
