"""Drawing tracks: a distinct colour per ID, ``ID <tid>`` labels, a trailing `` *`` when the track's
embedding was computed this frame, and lost tracks (optional) as thin grey boxes."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

GOLDEN_RATIO_CONJUGATE = 0.618033988749895
LOST_COLOR = (160, 160, 160)


def id_color(track_id: int) -> tuple[int, int, int]:
    """A bright BGR colour for an id; consecutive ids get well-separated hues (golden-ratio steps)."""
    h = (track_id * GOLDEN_RATIO_CONJUGATE) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def label_text(track_id: int, embedded_now: bool) -> str:
    """``"ID 7 *"`` when the embedding was computed this frame, else ``"ID 7"``."""
    return f"ID {track_id}" + (" *" if embedded_now else "")


@dataclass
class DrawStyle:
    """Line thickness (px) and font scale; ``None`` picks values from the image height."""

    line_thickness: int | None = None
    font_scale: float | None = None

    def resolve(self, height: int) -> tuple[int, float]:
        t = self.line_thickness if self.line_thickness is not None else max(1, round(height / 400))
        f = self.font_scale if self.font_scale is not None else max(0.4, height / 1500)
        return t, f


def draw_tracks(image: np.ndarray, tracks: Sequence, style: DrawStyle | None = None) -> np.ndarray:
    """Draw tracks on a copy of ``image``.

    Args:
        image: (H, W, 3) uint8 BGR.
        tracks: objects with ``track_id``, ``xyxy`` (4,), ``state`` (``LOST`` == 2 drawn grey and thin)
            and ``embedded_now``, e.g. :class:`mot_dinov3.track.TrackOutput`.
        style: line thickness and font scale (default: from the image size).

    Returns:
        The annotated (H, W, 3) uint8 BGR image.
    """
    out = image.copy()
    thick, scale = (style or DrawStyle()).resolve(image.shape[0])
    for t in tracks:
        x1, y1, x2, y2 = (int(round(v)) for v in t.xyxy)
        lost = int(t.state) == 2
        color = LOST_COLOR if lost else id_color(t.track_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 1 if lost else thick, cv2.LINE_AA)
        text = label_text(t.track_id, t.embedded_now) + (" (lost)" if lost else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, max(1, thick - 1))
        ty = max(th + base, y1)
        cv2.rectangle(out, (x1, ty - th - base), (x1 + tw + 2, ty), color, -1)
        cv2.putText(
            out, text, (x1 + 1, ty - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(1, thick - 1), cv2.LINE_AA
        )
    return out
