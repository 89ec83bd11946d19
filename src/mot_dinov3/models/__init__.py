"""The model catalogue behind ``mot-dinov3 models``: named ReID and embedding models (``catalogue.yaml``),
their download into the weights folder, the user's default model, and name resolution for runs.

>>> from mot_dinov3 import models
>>> models.get("osnet_x0_25_msmt17").dim
512
>>> models.hub_model("dinov2_vits14")
('facebook/dinov2-small', 'cls')
"""

from mot_dinov3.models.catalogue import (
    FAMILIES,
    ModelEntry,
    cache_dir,
    choose_embedder,
    config_path,
    default_embedder,
    default_model,
    file_path,
    get,
    hub_model,
    is_cached,
    list_models,
    lookup,
    recommend,
    resolve,
    resolve_config,
    use,
    use_reset,
)
from mot_dinov3.models.fetch import Fetched, download

__all__ = [
    "FAMILIES",
    "Fetched",
    "ModelEntry",
    "cache_dir",
    "choose_embedder",
    "config_path",
    "default_embedder",
    "default_model",
    "download",
    "file_path",
    "get",
    "hub_model",
    "is_cached",
    "list_models",
    "lookup",
    "recommend",
    "resolve",
    "resolve_config",
    "use",
    "use_reset",
]
