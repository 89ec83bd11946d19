"""Hugging Face Hub helpers: the access token, and turning load failures into user messages.

The token is read from ``HF_TOKEN``; the legacy names ``HUGGINGFACE_HUB_TOKEN`` and
``HUGGING_FACE_HUB_TOKEN`` are bridged. The CLI loads ``.env`` (python-dotenv) before this runs.
:func:`hub_reachable` lets loaders go cache-only when the Hub cannot be reached, instead of
``huggingface_hub`` retrying every request five times (about 23 s of warnings) before failing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

TOKEN_ENV_NAMES = ("HF_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN")

GATED, UNSUPPORTED, UNREACHABLE, NOT_FOUND = "gated", "unsupported", "unreachable", "not_found"


def hf_token(env: Mapping[str, str] | None = None) -> str | None:
    """The first non-empty token among ``HF_TOKEN`` and its legacy names, or ``None``."""
    env = os.environ if env is None else env
    for name in TOKEN_ENV_NAMES:
        if env.get(name):
            return env[name]
    return None


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers: one HEAD request to its endpoint (``HF_ENDPOINT``), no retries.

    Goes through ``huggingface_hub``'s own HTTP session, so proxy settings apply; a 5xx answer (e.g. a
    proxy's 502 for a host it cannot reach) counts as unreachable. False at once in offline mode
    (``HF_HUB_OFFLINE=1``).

    Args:
        timeout_s: connect / read timeout, seconds.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    offline = getattr(constants, "is_offline_mode", lambda: constants.HF_HUB_OFFLINE)()
    if offline:
        return False
    try:
        status = get_session().head(constants.ENDPOINT, timeout=timeout_s).status_code
    except Exception:  # DNS failure, refused, timeout, proxy error: not reachable from here
        return False
    return status < 500


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify_load_error(exc: BaseException) -> str | None:
    """Why a ``from_pretrained`` call failed.

    Returns:
        ``"gated"`` (no access to a gated repo), ``"unsupported"`` (the installed transformers does not
        know the architecture, e.g. ``dinov3_vit``), ``"unreachable"`` (offline / hub unreachable and
        not cached), ``"not_found"`` (no such repo or folder), or ``None`` (something else).
    """
    names = {type(e).__name__ for e in _chain(exc)}
    text = " ".join(str(e) for e in _chain(exc)).lower()
    if "GatedRepoError" in names or "gated repo" in text:
        return GATED
    if "does not recognize this architecture" in text or ("KeyError" in names and "dinov3" in text):
        return UNSUPPORTED
    if (
        names
        & {
            "LocalEntryNotFoundError",
            "OfflineModeIsEnabled",
            "ConnectionError",
            "ConnectError",
            "ConnectTimeout",
            "ReadTimeout",
            "Timeout",
            "MaxRetryError",
        }
        or "couldn't connect" in text
    ):
        return UNREACHABLE
    if "RepositoryNotFoundError" in names or "not a valid model identifier" in text:
        return NOT_FOUND
    return None


def gated_message(model_id: str) -> str:
    """The seed design's gated-model message (multi-line, printed without a traceback)."""
    return (
        f"Model '{model_id}' is gated on Hugging Face.\n"
        "To use it:\n"
        "  1) Visit the model page while logged in and click \u201cAgree/Request access\u201d.\n"
        "  2) Provide an access token (recommended via .env):\n"
        "       HF_TOKEN=hf_xxx\n"
        "     Or log in once: `huggingface-cli login`.\n"
        "  3) Or choose an open fallback, e.g.: dinov3='facebook/dinov2-base' (or add fallback_open=True)"
    )


def unsupported_message(model_id: str) -> str:
    import transformers

    return (
        f"Model '{model_id}': transformers {transformers.__version__} does not recognize this architecture "
        "(DINOv3 needs transformers >= 4.56); run `pip install -U transformers` (or `bash setup.sh cpu "
        "--dinov3-edge`), or add fallback_open=True / dinov3='facebook/dinov2-base'"
    )


def unreachable_message(model_id: str) -> str:
    return (
        f"Model '{model_id}' is not cached and the Hugging Face Hub is unreachable (offline?); pass a local "
        "model folder with embed_model=PATH (config.json + weights), download it once while online, "
        "or use embedder='yolo' (detector features, no download) or embedder='onnx' with embed_model='model.onnx'"
    )


def not_found_message(model_id: str) -> str:
    return (
        f"Model '{model_id}' is neither a local folder nor a model id on the Hugging Face Hub; "
        "check the name or pass embed_model=PATH, a local model folder"
    )
