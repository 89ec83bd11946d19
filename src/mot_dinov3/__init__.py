"""mot-dinov3: YOLO detection, budget-aware appearance-embedding scheduling and an IoU + cosine tracker.

Python API: :class:`MultiObjectTracker` (detections from any detector), :func:`track` and
:func:`iter_track` (the CLI's main job). Configs: :class:`TrackerConfig`, :class:`SchedulerConfig`.
"""

__version__ = "0.1.0"

from mot_dinov3.api import MultiObjectTracker, TrackerStats, iter_track, track  # noqa: E402
from mot_dinov3.config import SchedulerConfig, TrackerConfig  # noqa: E402
from mot_dinov3.errors import MissingFileError, UserError  # noqa: E402

__all__ = [
    "MissingFileError",
    "MultiObjectTracker",
    "SchedulerConfig",
    "TrackerConfig",
    "TrackerStats",
    "UserError",
    "__version__",
    "iter_track",
    "track",
]
