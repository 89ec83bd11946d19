"""The model catalogue: named ReID / embedding models (``catalogue.yaml``, data only), where their files
live, the user's default model (``mot-dinov3 models use``) and how a name becomes what a backend loads.

Library code: nothing here prints; errors are :class:`~mot_dinov3.errors.UserError` naming Python
parameters (``embed_model='x'``).
"""

from __future__ import annotations

import difflib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mot_dinov3.errors import UserError

if TYPE_CHECKING:
    from mot_dinov3.config import EmbedderConfig

WEIGHTS_ENV = "MOT_DINOV3_WEIGHTS"  # the weights folder (also where --det looks)
CONFIG_ENV = "MOT_DINOV3_CONFIG"  # the user config file (``models use``)
APP = "mot-dinov3"

FAMILIES = ("osnet", "mobilenet", "resnet", "clip-reid", "dinov2", "dinov3", "clip")
TASKS = ("person-reid", "general")
BACKENDS = ("onnx", "osnet", "dino", "clip")  # the --embedder that runs an entry (or none: download only)
SPEEDS = ("fast", "balanced", "accurate")
GOALS = ("speed", "balanced", "accuracy")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ModelEntry:
    """One catalogue entry (see ``catalogue.yaml`` for the fields).

    A *file* entry (``file`` set) is a weights file in :func:`cache_dir`; a *hub* entry (``hf_id`` set) is
    a Hugging Face model that ``transformers`` downloads and caches.
    """

    name: str
    family: str
    task: str
    backend: str | None
    dim: int
    input: tuple[int, int]
    speed: str
    source: str
    license: str
    url: str | None = None
    file: str | None = None
    hf_id: str | None = None
    sha256: str | None = None
    ms_per_crop_cpu: float | None = None
    arch: str | None = None
    notes: str | None = None

    @property
    def is_hub(self) -> bool:
        return self.hf_id is not None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["input"] = list(self.input)
        return d


def _entry(raw: dict[str, Any]) -> ModelEntry:
    fields = ModelEntry.__dataclass_fields__
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ValueError(f"catalogue entry {raw.get('name')!r}: unknown fields {unknown}")
    data = dict(raw)
    data["input"] = tuple(int(v) for v in data.get("input") or ())
    return ModelEntry(**data)


@lru_cache(maxsize=1)
def _catalogue() -> tuple[dict[str, ModelEntry], dict[str, Any]]:
    text = resources.files("mot_dinov3.models").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    entries: dict[str, ModelEntry] = {}
    for raw in data["models"]:
        e = _entry(raw)
        if e.name in entries:
            raise ValueError(f"catalogue: duplicate name {e.name!r}")
        entries[e.name] = e
    return entries, data.get("recommend") or {}


def list_models(family: str | None = None) -> list[ModelEntry]:
    """Every entry, in catalogue order; only ``family``'s if given.

    Raises:
        UserError: an unknown family.
    """
    if family is not None and family not in FAMILIES:
        raise UserError(f"family={family!r}: unknown; choose one of {', '.join(FAMILIES)}")
    return [e for e in _catalogue()[0].values() if family is None or e.family == family]


def lookup(name: str) -> ModelEntry | None:
    """The entry called ``name``, or ``None``."""
    return _catalogue()[0].get(name)


def get(name: str) -> ModelEntry:
    """The entry called ``name``.

    Raises:
        UserError: not a catalogue name (with the closest names).
    """
    entry = lookup(name)
    if entry is None:
        close = difflib.get_close_matches(name, list(_catalogue()[0]), n=3, cutoff=0.5)
        hint = (
            f"did you mean {', '.join(close)}?"
            if close
            else "see mot_dinov3.models.list_models() (mot-dinov3 models list)"
        )
        raise UserError(f"model {name!r}: not in the model catalogue; {hint}")
    return entry


def hub_model(name: str, return_clstoken: bool = True) -> tuple[str, str]:
    """A DINOv2 torch-hub name (``dinov2_vits14``, ``dinov2_vitb14_reg`` ...) as ``(Hugging Face id,
    pooling)``: ``return_clstoken=True`` is ``pooling="cls"``, ``False`` is ``"mean"`` (patch tokens).

    Raises:
        UserError: not a DINOv2 name of the catalogue.
    """
    entry = get(name)
    if entry.family != "dinov2" or entry.hf_id is None:
        raise UserError(f"model {name!r}: not a DINOv2 torch-hub name (dinov2_vits14 ... dinov2_vitg14_reg)")
    return entry.hf_id, "cls" if return_clstoken else "mean"


# ---- where things are ---------------------------------------------------------------------------------


def user_dir(kind: str) -> Path:
    """The per-user ``cache`` or ``config`` folder of this app (platformdirs when installed)."""
    try:
        import platformdirs
    except ImportError:
        platformdirs = None
    if platformdirs is not None:
        return Path(getattr(platformdirs, f"user_{kind}_dir")(APP))
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / APP / ("Cache" if kind == "cache" else "")
    if sys.platform == "darwin":
        return home / "Library" / ("Caches" if kind == "cache" else "Application Support") / APP
    xdg = os.environ.get("XDG_CACHE_HOME" if kind == "cache" else "XDG_CONFIG_HOME")
    return Path(xdg or home / (".cache" if kind == "cache" else ".config")) / APP


def cache_dir() -> Path:
    """The weights folder: ``$MOT_DINOV3_WEIGHTS``, else ``<user cache dir>/mot-dinov3/weights``."""
    folder = os.environ.get(WEIGHTS_ENV)
    return Path(folder).expanduser() if folder else user_dir("cache") / "weights"


def file_path(entry: ModelEntry) -> Path:
    """Where a file entry's weights are (or go) in :func:`cache_dir`."""
    if entry.file is None:
        raise UserError(f"model {entry.name!r} is a Hugging Face model ({entry.hf_id}), not a file")
    return cache_dir() / entry.file


def is_cached(entry: ModelEntry) -> bool:
    """Whether the weights are here: the file in :func:`cache_dir`, or the hub model in the Hugging Face
    cache (its ``config.json``; no network)."""
    if entry.file is not None:
        return file_path(entry).is_file()
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(str(entry.hf_id), "config.json"), str)
    except Exception:  # an unreadable cache: not cached
        return False


def config_path() -> Path:
    """The user config file: ``$MOT_DINOV3_CONFIG``, else ``<user config dir>/mot-dinov3/config.json``."""
    path = os.environ.get(CONFIG_ENV)
    return Path(path).expanduser() if path else user_dir("config") / "config.json"


# ---- the user's default model -------------------------------------------------------------------------


def _read_config() -> dict[str, Any]:
    path = config_path()
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError) as exc:
        raise UserError(f"user config {path}: unreadable ({exc}); fix or delete the file") from exc
    if not isinstance(data, dict):
        raise UserError(f"user config {path}: expected a JSON object; fix or delete the file")
    return data


def _write_config(data: dict[str, Any]) -> Path:
    path = config_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(f"user config {path}: cannot write it ({exc})") from exc
    return path


def use(name: str) -> Path:
    """Make catalogue model ``name`` the default embedder of later runs that set neither ``embedder``
    nor ``embed_model``; returns the config file written.

    Raises:
        UserError: an unknown name, a model no backend here runs, or an unwritable config file.
    """
    entry = get(name)
    if entry.backend is None:
        raise UserError(f"model {name!r}: no embedder here runs it ({entry.notes or entry.source})")
    data = _read_config()
    data["embed_model"] = entry.name
    return _write_config(data)


def use_reset() -> bool:
    """Forget the default set by :func:`use` (back to the built-in default); whether there was one."""
    data = _read_config()
    if "embed_model" not in data:
        return False
    del data["embed_model"]
    if data:
        _write_config(data)
    else:
        config_path().unlink(missing_ok=True)
    return True


def default_model() -> ModelEntry | None:
    """The entry chosen by :func:`use`, or ``None`` (no user config, or none chosen).

    Raises:
        UserError: an unreadable config file, or a name that is no longer in the catalogue.
    """
    name = _read_config().get("embed_model")
    if not name:
        return None
    try:
        return get(str(name))
    except UserError as exc:
        raise UserError(f"user config {config_path()}: {exc} (reset it with mot_dinov3.models.use_reset())") from exc


def default_embedder() -> tuple[str, str] | None:
    """``(backend, catalogue name)`` of the default chosen by :func:`use`, or ``None``."""
    entry = default_model()
    return (str(entry.backend), entry.name) if entry is not None and entry.backend else None


# ---- recommendations -----------------------------------------------------------------------------------


def recommend(goal: str, device: str = "cpu", task: str = "person-reid") -> tuple[ModelEntry, str]:
    """One model for ``goal`` (``speed``, ``balanced``, ``accuracy``) on ``device`` (``cpu``, ``cuda``;
    ``cuda:0`` counts as ``cuda``) for ``task`` (``person-reid``, ``general``), with a one-line reason.

    Raises:
        UserError: an unknown goal, device or task.
    """
    dev = device.split(":")[0] if device else "cpu"
    for value, choices, what in ((goal, GOALS, "goal"), (dev, DEVICES, "device"), (task, TASKS, "task")):
        if value not in choices:
            raise UserError(f"{what}={value!r}: unknown; choose one of {', '.join(choices)}")
    name, reason = _catalogue()[1][task][goal][dev]
    return get(name), str(reason)


# ---- names in runs -------------------------------------------------------------------------------------


def _looks_like_name(text: str) -> bool:
    """A bare word (no folder part, no suffix): a catalogue name, not a file, folder or hub id."""
    return "/" not in text and "\\" not in text and "." not in text


def resolve(name_or_path: str) -> str:
    """What a backend loads for ``name_or_path``: an existing path as given; a catalogue file entry's
    cached file; a catalogue hub entry's Hugging Face id; anything else (a hub id, a path the backend
    will report) unchanged.

    Raises:
        UserError: a catalogue file entry that is not downloaded (how to get it), or a bare name that is
            neither a path nor in the catalogue (with the closest names).
    """
    if Path(name_or_path).expanduser().exists():
        return name_or_path
    entry = lookup(name_or_path)
    if entry is None:
        if _looks_like_name(name_or_path):
            get(name_or_path)  # raises, with suggestions
        return name_or_path
    if entry.hf_id is not None:
        return entry.hf_id
    path = file_path(entry)
    if path.is_file():
        return str(path)
    if entry.url:
        how = f"download it with mot_dinov3.models.download({entry.name!r}) (mot-dinov3 models download {entry.name})"
    else:
        how = f"there is no public download ({entry.source}): put {entry.file} there by hand"
    raise UserError(f"model {entry.name!r} is not downloaded: expected {path}; {how}")


def choose_embedder(
    embedder: str | None, embed_model: str | None, dino_model_given: bool = False
) -> tuple[str, str | None]:
    """The backend and model of a run, from what the user gave.

    * ``embedder`` unset and ``embed_model`` a catalogue name: that entry's backend.
    * neither set (and no dino model given): the :func:`use` default, else ``dino``.
    * otherwise as given (``embedder`` defaulting to ``dino``).
    """
    if embedder is None and embed_model:
        entry = lookup(embed_model)
        if entry is not None and entry.backend:
            return entry.backend, embed_model
    if embedder is None and not embed_model and not dino_model_given:
        chosen = default_embedder()
        if chosen is not None:
            return chosen
    return embedder or "dino", embed_model


def resolve_config(cfg: EmbedderConfig) -> EmbedderConfig:
    """``cfg`` with a catalogue name in ``cfg.model`` replaced by what :func:`resolve` gives.

    Raises:
        UserError: a catalogue model of another backend, one no backend here runs, or what
            :func:`resolve` raises.
    """
    if not isinstance(cfg.model, str) or not cfg.model or cfg.name in ("none", "yolo"):
        return cfg  # no model, or a Path object: nothing to look up
    entry = lookup(cfg.model)
    if entry is not None and entry.backend != cfg.name:
        if entry.backend is None:
            raise UserError(f"embed_model={entry.name!r}: no embedder here runs it ({entry.notes or entry.source})")
        raise UserError(
            f"embed_model={entry.name!r} runs with embedder={entry.backend!r}, not embedder={cfg.name!r}; "
            f"pass embedder={entry.backend!r}"
        )
    model = resolve(cfg.model)
    return cfg if model == cfg.model else replace(cfg, model=model)
