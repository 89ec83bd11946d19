"""IoU + cosine multi-object tracker: Kalman motion, GMC, two-stage association, EMA re-identification.

Per frame, :meth:`Tracker.predict` moves every track with the Kalman filter and, for a moving camera,
the GMC warp (BoT-SORT, arXiv 2206.14651). :meth:`Tracker.update` then runs:

1. confirmed and lost tracks x high-score detections, BoT-SORT fused cost
   (:func:`~mot_dinov3.matching.fuse_iou_appearance`), threshold ``match_thresh``. A track that
   missed frames is only matched where its appearance agrees (cosine distance <= ``appearance_thresh``)
   or is unknown: after an occlusion, a box at the predicted place is often somebody else;
2. still-unmatched confirmed tracks x low-score detections, IoU only (ByteTrack, arXiv 2110.06864);
3. lost tracks x remaining high-score detections by appearance alone: the cosine distance to the
   track's EMA below ``reid_thresh``, with the centres at most ``reid_max_dist`` image widths from the
   last observation: re-identification after occlusion; up to ``reid_motion_thresh`` when the box
   centre is also inside the track's Kalman gate (squared Mahalanobis distance <= ``CHI2_99_2DOF``,
   DeepSORT's gated appearance metric, arXiv 1703.07402; the gate widens with every frame the track is
   lost). It runs before tentative tracks get their boxes;
4. tentative tracks x remaining high-score detections (fused cost, ``TENTATIVE_MATCH_THRESH``);
5. life cycle: unmatched confirmed tracks become lost; lost tracks older than ``track_buffer``
   (frames at 30 fps, scaled by the real fps) are removed; unmatched tentative tracks are removed;
   remaining detections start tentative tracks (confirmed at once on the first frame or with
   ``min_hits`` 1), except, below ``new_track_thresh``, those within re-identification reach of a lost
   track: that may be the lost object back, half hidden, and waits for re-identification. Elsewhere a
   box confident enough for the first association is a new object; in crowds and with weaker
   detectors most people never reach a birth threshold tuned on well-scored boxes.

Life cycle: tentative -> confirmed (``min_hits`` matches) -> lost -> confirmed again or removed.
A track coming back after missed frames restarts its velocity from its last observation (OC-SORT's
observation-centric re-update, simplified). Reported boxes are the Kalman-filtered states.
A track's embedding is an EMA (``alpha``) of the fresh embeddings matched to it; embeddings the
caller marks as not fresh (reused from cache), and embeddings of boxes overlapping another detection
by more than ``CLEAN_OVERLAP_IOU``, are used for matching but never enter the EMA (they mix two objects).
:meth:`Tracker.update_appearance` adds embeddings of a track's earlier looks (lazy memory); a look
weighs as the frames it stands for since the memory's previous sample
(``e = alpha**k * e + (1 - alpha**k) * look``), so sparse looks keep the time constant that one
embedding a frame would give the EMA.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mot_dinov3 import matching, motion
from mot_dinov3.config import CLEAN_OVERLAP_IOU, TrackerConfig
from mot_dinov3.track import Track, TrackOutput, TrackState, TrackView

__all__ = ["Tracker", "Track", "TrackOutput", "TrackState", "TrackView"]

TENTATIVE_MATCH_THRESH = 0.7  # BoT-SORT's threshold for unconfirmed tracks
SECOND_MATCH_THRESH = 0.4  # max 1 - IoU of a second-stage (low-score, IoU-only) match: IoU above 0.6
CHI2_99_2DOF = 9.21  # chi-square 99% quantile, 2 degrees of freedom: the Kalman gate on a box centre


class Tracker:
    """See the module docstring.

    Args:
        cfg: thresholds (:class:`~mot_dinov3.config.TrackerConfig`).
        fps: source frame rate; ``track_buffer`` is scaled by ``fps / 30``.
    """

    def __init__(self, cfg: TrackerConfig, fps: float = 30.0):
        self.cfg = cfg
        self.max_lost = max(1, int(round(cfg.track_buffer * fps / 30.0)))
        self.frame = 0
        self.tracks: list[Track] = []
        self._next_id = 1

    # -- per frame -------------------------------------------------------------------------------
    def predict(self, warp: np.ndarray | None = None) -> list[TrackView]:
        """Advance to the next frame: Kalman-predict every track; return read-only views of all tracks
        (tentative, confirmed and lost).

        Args:
            warp: (2, 3) affine camera motion from the previous frame to this one
                (:class:`mot_dinov3.gmc.CameraMotion`), applied after the prediction; ``None``: static.
        """
        self.frame += 1
        if self.tracks:
            means = np.stack([t.mean for t in self.tracks])
            lost = np.array([t.state == TrackState.LOST for t in self.tracks])
            means[lost, 6:8] = 0.0  # a lost track keeps its size (BoT-SORT)
            means, covs = motion.predict(means, np.stack([t.cov for t in self.tracks]))
            if warp is not None:
                means, covs = motion.warp_states(means, covs, warp)
                last = motion.warp_boxes(np.stack([t.last_obs for t in self.tracks]), warp)
            boxes = motion.xywh_to_xyxy(means[:, :4]).astype(np.float32)
            for i, (t, m, c) in enumerate(zip(self.tracks, means, covs)):
                t.set_state(m, c, boxes[i])
                t.embedded_now, t.det_xyxy = False, None
                if warp is not None:
                    t.last_obs = last[i]
        return self.views()

    def views(self) -> list[TrackView]:
        """Read-only views of every track (tentative, confirmed, lost), as they stand now."""
        return [
            TrackView(
                t.track_id,
                t.xyxy,
                t.embedding,
                t.last_embed_frame,
                t.state == TrackState.LOST,
                t.last_seen,
                t.start_frame,
                t.last_obs.copy(),
            )
            for t in self.tracks
        ]

    def _in_reach(self, tracks: list[Track], xyxy: np.ndarray, image_w: int) -> np.ndarray:
        """(T, N) bool: box centres at most ``reid_max_dist`` image widths from each track's last observation."""
        last = np.array([t.last_obs for t in tracks]).reshape(-1, 4)
        return matching.centroid_distance(last, xyxy, image_w) <= self.cfg.reid_max_dist

    def update_appearance(self, track_id: int, frames: np.ndarray, embeddings: np.ndarray) -> None:
        """Absorb embeddings of a track's earlier looks into its appearance memory (the EMA).

        Call between :meth:`predict` and :meth:`update`. Each look weighs as the frames it stands for
        since the memory's previous sample (``alpha**gap``, see the module docstring);
        looks not newer than the memory's last sample are ignored, as are unknown track ids.

        Args:
            track_id: the track.
            frames: (K,) int, 1-based frames the looks were seen in.
            embeddings: (K, D) float32 L2-normalised.
        """
        t = next((t for t in self.tracks if t.track_id == track_id), None)
        if t is None:
            return
        for k in np.argsort(frames, kind="stable"):
            fr = int(frames[k])
            if fr <= t.last_embed_frame:
                continue
            self._absorb(t, embeddings[k], max(1, fr - t.last_embed_frame))
            t.last_embed_frame = fr

    def update(
        self,
        xyxy: np.ndarray,
        conf: np.ndarray,
        cls: np.ndarray,
        image_wh: tuple[int, int],
        embeddings: np.ndarray | None = None,
        known: np.ndarray | None = None,
        fresh: np.ndarray | None = None,
        include_lost: bool = False,
    ) -> list[TrackOutput]:
        """Associate this frame's detections (call :meth:`predict` first).

        Args:
            xyxy: (N, 4) float32 detection boxes, pixels.
            conf: (N,) float32 confidences.
            cls: (N,) int class ids.
            image_wh: (W, H) of the frame, pixels, for the re-identification distance gate.
            embeddings: (N, D) float32 L2-normalised, or ``None`` for motion-only tracking.
            known: (N,) bool, rows of ``embeddings`` that hold an embedding (default: all); pairs with an
                unknown row fall back to IoU.
            fresh: (N,) bool, True where the embedding was computed this frame (default: all True).
            include_lost: also report lost tracks (at their predicted box).

        Returns:
            Confirmed tracks matched this frame (plus lost ones if asked), ordered by id.
        """
        cfg = self.cfg
        n = len(xyxy)
        fresh = np.ones(n, bool) if fresh is None else np.asarray(fresh, bool)
        known = np.ones(n, bool) if known is None else np.asarray(known, bool)
        if embeddings is None:
            known = np.zeros(n, bool)
        # an embedding of a box that overlaps another detection mixes two objects: match with it,
        # but keep it out of the track's EMA
        overlap = matching.iou_matrix(xyxy, xyxy)
        np.fill_diagonal(overlap, 0.0)
        alone = ~(overlap > CLEAN_OVERLAP_IOU).any(axis=1)
        frame = _FrameDets(xyxy, conf, cls, embeddings, known, fresh & alone & known)
        high = np.flatnonzero(conf >= cfg.track_high_thresh)
        low = np.flatnonzero((conf >= cfg.track_low_thresh) & (conf < cfg.track_high_thresh))
        confirmed = [t for t in self.tracks if t.state == TrackState.CONFIRMED]
        lost = [t for t in self.tracks if t.state == TrackState.LOST]
        tentative = [t for t in self.tracks if t.state == TrackState.TENTATIVE]

        # 1. confirmed + lost x high, fused IoU / appearance cost (BoT-SORT)
        pool = confirmed + lost
        pairs, um_pool, um_high = self._associate(pool, high, frame, cfg.match_thresh)
        self._match([pool[r] for r in pairs[:, 0]], high[pairs[:, 1]], frame)
        remaining = high[um_high]

        # 2. unmatched confirmed x low, IoU only (ByteTrack)
        r_conf = [pool[i] for i in um_pool if pool[i].state == TrackState.CONFIRMED]
        cost = 1.0 - matching.iou_matrix(np.array([t.xyxy for t in r_conf]).reshape(-1, 4), xyxy[low])
        pairs2, _, _ = matching.linear_assignment(cost, SECOND_MATCH_THRESH, cfg.use_hungarian)
        self._match([r_conf[r] for r in pairs2[:, 0]], low[pairs2[:, 1]], frame, use_embedding=False)

        # 3. lost x remaining high by appearance, gated by distance: re-identification
        still_lost = [t for t in self.tracks if t.state == TrackState.LOST and t.last_seen != self.frame]
        if embeddings is not None and still_lost and len(remaining):
            remaining = self._reidentify(still_lost, remaining, frame, image_wh[0])

        # 4. tentative x remaining high
        pairs5, um_tent, um_high5 = self._associate(tentative, remaining, frame, TENTATIVE_MATCH_THRESH)
        self._match([tentative[r] for r in pairs5[:, 0]], remaining[pairs5[:, 1]], frame)
        remaining = remaining[um_high5]
        for i in um_tent:
            tentative[i].state = TrackState.REMOVED

        # 5. life cycle
        for t in self.tracks:
            if t.state == TrackState.CONFIRMED and t.last_seen != self.frame:
                t.state = TrackState.LOST
            elif t.state == TrackState.LOST and self.frame - t.last_seen > self.max_lost:
                t.state = TrackState.REMOVED
        for d in remaining[self._may_start(remaining, frame, image_wh[0])]:
            self._start(d, frame)
        self.tracks = [t for t in self.tracks if t.state != TrackState.REMOVED]
        return self._outputs(include_lost)

    # -- steps -----------------------------------------------------------------------------------
    def _associate(self, tracks: list[Track], dets: np.ndarray, f: _FrameDets, thresh: float):
        if not tracks or not len(dets):
            return np.zeros((0, 2), int), np.arange(len(tracks)), np.arange(len(dets))
        iou = matching.iou_matrix(np.array([t.xyxy for t in tracks]), f.xyxy[dets])
        app = None
        if f.embeddings is not None:
            app = self._appearance(tracks, f.embeddings[dets], f.known[dets])
        cost = matching.fuse_iou_appearance(
            iou, app, f.conf[dets], self.cfg.proximity_thresh, self.cfg.appearance_thresh
        )
        if app is not None:
            cost = np.where(self._appearance_veto(tracks, app), 1e3, cost)
        return matching.linear_assignment(cost, thresh, self.cfg.use_hungarian)

    def _appearance_veto(self, tracks: list[Track], app: np.ndarray) -> np.ndarray:
        """(T, M) bool: a track that missed frames comes back only if its appearance agrees (where both
        embeddings are known, cosine distance ``app`` <= ``appearance_thresh``)."""
        gap = np.array([self.frame - t.last_seen for t in tracks])
        return (gap[:, None] > 1) & (app > self.cfg.appearance_thresh) & (app < 2.0)

    @staticmethod
    def _appearance(tracks: list[Track], det_emb: np.ndarray, known: np.ndarray) -> np.ndarray:
        """(T, M) cosine distance of tracks' EMA embeddings to detection embeddings; 2 (unknown) for tracks
        without one and for detections whose row is not ``known``."""
        out = np.full((len(tracks), len(det_emb)), 2.0, np.float32)
        have, rows = [], []
        for i, t in enumerate(tracks):
            if t.embedding is not None:
                have.append(i)
                rows.append(t.embedding)
        if have:
            out[have] = matching.cosine_distance(np.stack(rows), det_emb)
        out[:, ~known] = 2.0
        return out

    def _reidentify(self, lost: list[Track], dets: np.ndarray, f: _FrameDets, img_w: int) -> np.ndarray:
        have = [t for t in lost if t.embedding is not None]
        if not have or f.embeddings is None:
            return dets
        cfg = self.cfg
        app = self._appearance(have, f.embeddings[dets], f.known[dets])
        near = self._in_reach(have, f.xyxy[dets], img_w)
        cost = np.where(near, app, 2.0)
        accept = cost <= cfg.reid_thresh
        if cfg.reid_motion_thresh > cfg.reid_thresh:  # DeepSORT: appearance inside the Kalman gate
            centres = (f.xyxy[dets, :2] + f.xyxy[dets, 2:]) / 2
            gate = (
                motion.gating_distance(np.stack([t.mean for t in have]), np.stack([t.cov for t in have]), centres)
                <= CHI2_99_2DOF
            )
            accept |= (cost <= cfg.reid_motion_thresh) & gate
        cost = np.where(accept, cost, 2.0)
        pairs, _, um = matching.linear_assignment(cost, max(cfg.reid_thresh, cfg.reid_motion_thresh), cfg.use_hungarian)
        self._match([have[r] for r in pairs[:, 0]], dets[pairs[:, 1]], f)
        return dets[um]

    def _match(self, tracks: list[Track], dets: np.ndarray, f: _FrameDets, use_embedding: bool = True) -> None:
        """Update ``tracks[i]`` with detection row ``dets[i]``: one batched Kalman update, then each
        track's life cycle and appearance memory."""
        if not tracks:
            return
        z = motion.xyxy_to_xywh(f.xyxy[dets])
        means, covs = np.stack([t.mean for t in tracks]), np.stack([t.cov for t in tracks])
        gap = self.frame - np.array([t.last_seen for t in tracks])
        back = gap > 1  # back after missed frames: restart the velocity from the observations (OC-SORT ORU)
        if back.any():
            last = motion.xyxy_to_xywh(np.stack([t.last_obs for t, b in zip(tracks, back) if b]))
            means[back, 4:6] = (z[back, :2] - last[:, :2]) / gap[back, None]
            means[back, 6:8] = 0.0
        means, covs = motion.update(means, covs, z)
        boxes = motion.xywh_to_xyxy(means[:, :4]).astype(np.float32)
        for i, (t, d) in enumerate(zip(tracks, dets.tolist())):
            t.set_state(means[i], covs[i], boxes[i])
            t.conf, t.cls, t.last_seen = float(f.conf[d]), int(f.cls[d]), self.frame
            t.det_xyxy, t.det_index = f.xyxy[d].copy(), d
            t.last_obs = t.det_xyxy
            t.hits += 1
            if t.state == TrackState.LOST or (t.state == TrackState.TENTATIVE and t.hits >= self.cfg.min_hits):
                t.state = TrackState.CONFIRMED
            if use_embedding and f.embeddings is not None and f.clean[d]:
                self._update_embedding(t, f.embeddings[d])

    def _update_embedding(self, t: Track, e: np.ndarray) -> None:
        self._absorb(t, e, 1)
        t.last_embed_frame, t.embedded_now = self.frame, True

    def _absorb(self, t: Track, e: np.ndarray, steps: int) -> None:
        """EMA update weighing ``e`` as ``steps`` observations (``alpha**steps``)."""
        e = np.asarray(e, np.float32)
        if t.embedding is None:
            t.embedding = e.copy()
        else:
            a = self.cfg.alpha**steps
            ema = a * t.embedding + (1.0 - a) * e
            t.embedding = (ema / max(float(np.linalg.norm(ema)), 1e-12)).astype(np.float32)
        t.samples += 1

    def _may_start(self, dets: np.ndarray, f: _FrameDets, image_w: int) -> np.ndarray:
        """(len(dets),) bool: the unmatched high-score detections that start a track: every one with no lost
        track within re-identification reach (a new object), else only those at ``new_track_thresh`` (it
        may be the lost object back, half hidden: it waits for re-identification)."""
        lost = [t for t in self.tracks if t.state == TrackState.LOST]
        if not lost or not len(dets):
            return np.ones(len(dets), bool)
        return ~self._in_reach(lost, f.xyxy[dets], image_w).any(axis=0) | (f.conf[dets] >= self.cfg.new_track_thresh)

    def _start(self, d: int, f: _FrameDets) -> None:
        mean, cov = motion.initiate(motion.xyxy_to_xywh(f.xyxy[d]))
        state = TrackState.CONFIRMED if self.frame == 1 or self.cfg.min_hits <= 1 else TrackState.TENTATIVE
        box = f.xyxy[d].copy()
        t = Track(
            self._next_id,
            mean,
            cov,
            float(f.conf[d]),
            int(f.cls[d]),
            state,
            1,
            self.frame,
            box,
            det_xyxy=box,
            det_index=int(d),
            start_frame=self.frame,
        )
        self._next_id += 1
        if f.embeddings is not None and f.clean[d]:
            self._update_embedding(t, f.embeddings[d])
        self.tracks.append(t)

    def _outputs(self, include_lost: bool) -> list[TrackOutput]:
        out = []
        for t in self.tracks:
            if t.state == TrackState.CONFIRMED and t.last_seen == self.frame:
                out.append(TrackOutput(t.track_id, t.xyxy, t.conf, t.cls, t.state, t.embedded_now, t.det_index))
            elif include_lost and t.state == TrackState.LOST:
                out.append(TrackOutput(t.track_id, t.xyxy, t.conf, t.cls, t.state, False))
        return sorted(out, key=lambda o: o.track_id)


@dataclass(frozen=True)
class _FrameDets:
    """This frame's detections as the association steps read them.

    ``known``: rows of ``embeddings`` that hold an embedding; ``clean``: a fresh embedding of a box
    overlapping no other detection (fit for the EMA).
    """

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    embeddings: np.ndarray | None
    known: np.ndarray
    clean: np.ndarray
