"""Ultralytics integration: our embedders as BoT-SORT's ReID encoder, through ``YOLO(...).track(...)``
on a real MOT17-mini sequence with the real detector and real OSNet weights, and a random-init DINOv2-S
(the real facebook/dinov2-small config) saved to a local folder. Nothing touches the network."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from conftest import ROOT, shared_path

from mot_dinov3.errors import UserError
from mot_dinov3.integrations import ultralytics as integ
from mot_dinov3.integrations.ultralytics import DINOv2ReID, EmbedderReID, build_reid, reid_config, xywh_to_xyxy

SEQ = "data/MOT17-mini/train/MOT17-02-FRCNN"  # 1920x1080, about 22 pedestrians a frame
SMALL_SEQ = "data/MOT17-mini/train/MOT17-05-FRCNN"  # 640x480, about 6: fewer crops for the slower ViT


@pytest.fixture(scope="module")
def dinov2_small_folder(tmp_path_factory, dinov2_small_config) -> Path:
    """A random-init DINOv2-S saved as a Hugging Face folder (weights + the real configs)."""
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dinov2-small-random")
    AutoModel.from_config(AutoConfig.from_pretrained(dinov2_small_config)).save_pretrained(folder)
    shutil.copy(dinov2_small_config / "preprocessor_config.json", folder)
    return folder


@pytest.fixture
def registered():
    """register() for one test, undone afterwards (unless it was registered before)."""
    was = integ.is_registered()
    integ.register()
    yield
    if not was:
        integ.unregister()


def frames(n: int, seq: str = SEQ) -> list[str]:
    return [str(p) for p in sorted((shared_path(seq) / "img1").glob("*.jpg"))[:n]]


def gt_xywh(frame: int = 1, n: int = 5) -> np.ndarray:
    """(n, 5) centre boxes of frame ``frame``'s gt pedestrians plus an index column, as BoT-SORT passes them."""
    gt = np.loadtxt(shared_path(SEQ) / "gt" / "gt.txt", delimiter=",")
    rows = gt[(gt[:, 0] == frame) & (gt[:, 6] == 1) & (gt[:, 7] == 1)][:n]
    xywh = np.c_[rows[:, 2:4] + rows[:, 4:6] / 2, rows[:, 4:6]]
    return np.c_[xywh, np.arange(len(xywh))].astype(np.float32)


def tracker_yaml(tmp_path: Path, name: str, **changes) -> Path:
    """A copy of ``configs/<name>`` with ``changes`` applied."""
    cfg = yaml.safe_load((ROOT / "configs" / name).read_text(encoding="utf-8"))
    cfg.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def track(yolov8n, tracker: Path, n_frames: int, seq: str = SEQ):
    """``YOLO(yolov8n).track`` over the first frames; (results, the BoT-SORT tracker, embedding_distance calls)."""
    from ultralytics import YOLO
    from ultralytics.trackers.utils import matching

    reads = []
    real = matching.embedding_distance

    def spy(tracks, detections, *args, **kwargs):
        reads.append((len(tracks), len(detections)))
        return real(tracks, detections, *args, **kwargs)

    matching.embedding_distance = spy  # BoT-SORT.get_dists reads appearance through it
    try:
        model = YOLO(str(yolov8n))
        results = model.track(
            source=frames(n_frames, seq), tracker=str(tracker), persist=True, classes=[0], verbose=False
        )
    finally:
        matching.embedding_distance = real
    return results, model.predictor.trackers[0], reads


def assert_tracked_with_our_reid(results, tracker, reads, dim: int, n_frames: int):
    assert len(results) == n_frames
    ids = [r.boxes.id for r in results]
    assert all(i is not None and len(i) > 0 for i in ids[1:]), "tracks with ids in every frame after the first"
    enc = tracker.encoder
    assert isinstance(enc, EmbedderReID) and enc.dim == dim
    assert enc.calls >= n_frames and enc.embedded >= sum(len(i) for i in ids if i is not None)
    assert reads and any(t and d for t, d in reads), "the association read the appearance distances"
    feats = [t.smooth_feat for t in tracker.tracked_stracks]
    assert feats and all(f is not None and f.shape == (dim,) for f in feats)
    np.testing.assert_allclose([np.linalg.norm(f) for f in feats], 1.0, atol=1e-5)


# ---- the adapters ----------------------------------------------------------------------------------------


def test_xywh_to_xyxy_takes_centre_boxes_and_ignores_extra_columns():
    out = xywh_to_xyxy(np.array([[50, 40, 20, 10, 7], [0, 0, 2, 4, 8]]))
    np.testing.assert_array_equal(out, [[40, 35, 60, 45], [-1, -2, 1, 2]])
    assert out.dtype == np.float32 and xywh_to_xyxy(np.zeros((0, 5))).shape == (0, 4)


@pytest.mark.slow  # building the random-init DINOv2-S folder takes about 15 s on 2 busy cores
def test_dinov2_reid_on_a_real_frame(dinov2_small_folder):
    """The seed's interface: DINOv2ReID(model, device, return_clstoken)(img BGR, dets xywh) -> (N, D)."""
    img = cv2.imread(frames(1)[0])
    dets = gt_xywh(n=5)
    reid = DINOv2ReID(model="dinov2_vits14", device="cpu", return_clstoken=True, model_dir=dinov2_small_folder)
    out = reid(img, dets)
    assert out.shape == (5, 384) and out.dtype == np.float32 and reid.dim == 384
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out, reid.embedder.embed(img, xywh_to_xyxy(dets)), atol=1e-6)  # centre boxes
    assert reid.embedder.cfg.pooling == "cls" and reid.embedder.cfg.model == str(dinov2_small_folder)
    assert (reid.calls, reid.embedded) == (1, 5)
    assert reid(img, dets[:0]).shape == (0, 384)
    with pytest.raises(UserError, match="not a DINO model"):
        DINOv2ReID(model="osnet_x0_25_msmt17")


# ---- which model values are ours ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", ["auto", "", None, "yolo26n-cls.pt", "yolo26s-reid.onnx", "/w/reid.engine", "reid_openvino_model"]
)
def test_ultralytics_model_values_stay_ultralytics(model):
    assert reid_config(model) is None


def test_model_values_that_are_ours(tmp_path):
    hub = reid_config("dinov2_vits14", device="cuda:0")
    assert (hub.name, hub.model, hub.pooling, hub.device) == ("dino", "facebook/dinov2-small", "cls", "cuda:0")
    assert reid_config("dinov2_vitb14_reg", return_clstoken=False).pooling == "mean"
    assert reid_config("dinov2_vits14", model_dir=tmp_path).model == str(tmp_path)  # a hub name, a local folder
    osnet = reid_config("osnet_x0_25_msmt17", model_dir=tmp_path)
    assert (osnet.name, osnet.model) == ("osnet", str(tmp_path / "osnet_x0_25_msmt17.pt"))
    assert (reid_config("osnet_x0_25_msmt17").name, reid_config("osnet_x0_25_msmt17").model) == (
        "osnet",
        "osnet_x0_25_msmt17",  # create_embedder resolves it in the weights folder
    )
    assert reid_config("dinov3_vits16").name == "dino" and reid_config("clip_vit_b32").name == "clip"
    assert reid_config("/w/osnet_x0_25.onnx").name == "onnx" and reid_config("/w/osnet.pth").name == "osnet"
    explicit = reid_config("mot_dinov3:dino:facebook/dinov2-small")
    assert (explicit.name, explicit.model) == ("dino", "facebook/dinov2-small")
    assert reid_config("mot_dinov3:osnet:/w/osnet.pt").name == "osnet"  # a torchreid .pt, said explicitly
    assert (reid_config("mot_dinov3:clip").name, reid_config("mot_dinov3:clip").model) == ("clip", None)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "dinov2"}')
    assert reid_config(str(tmp_path / "hf")).name == "dino"
    (tmp_path / "hf" / "config.json").write_text('{"model_type": "resnet"}')
    assert reid_config(str(tmp_path / "hf")) is None


def test_bad_model_values_are_user_errors():
    with pytest.raises(UserError, match="unknown embedder"):
        reid_config("mot_dinov3:resnet")
    for name in ("yolo", "none"):
        with pytest.raises(UserError, match="cannot be BoT-SORT's ReID encoder"):
            reid_config(f"mot_dinov3:{name}")
    with pytest.raises(UserError, match="no embedder here runs it"):
        reid_config("mobilenetv2_x1_0_msmt17")
    with pytest.raises(UserError, match=r"^tracker model='osnet_x0_25_msmt17': .*not downloaded"):
        build_reid("osnet_x0_25_msmt17")  # the conftest's empty weights folder
    with pytest.raises(UserError, match=r"^tracker model='/nope/reid.onnx': .*not found"):
        build_reid("/nope/reid.onnx")


def test_an_onnx_exported_by_ultralytics_goes_back_to_ultralytics(monkeypatch):
    """Ultralytics' ONNX exports expect 0..1 input: their metadata (author: Ultralytics) sends them back."""
    from types import SimpleNamespace

    def fake(author):
        graph = SimpleNamespace(metadata={"author": author, "task": "classify"})
        return SimpleNamespace(name="onnx", dim=8, graph=graph)

    monkeypatch.setattr(integ, "create_embedder", lambda cfg: fake("Ultralytics"))
    assert build_reid("/w/yolo-cls.onnx") is None
    assert isinstance(build_reid("mot_dinov3:onnx:/w/yolo-cls.onnx"), EmbedderReID)  # said explicitly: ours
    monkeypatch.setattr(integ, "create_embedder", lambda cfg: fake("torchreid"))
    assert isinstance(build_reid("/w/osnet.onnx"), EmbedderReID)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_onnx_metadata_is_read_on_both_runtimes(tmp_path, osnet_onnx, runtime, monkeypatch):
    """The real OSNet file with Ultralytics' author tag: each runtime reads it, and build_reid hands it back."""
    onnx = pytest.importorskip("onnx")
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the openvino package is not installed")
    from mot_dinov3.features.onnx import OnnxGraph

    model = onnx.load(str(osnet_onnx))
    onnx.helper.set_model_props(model, {"author": "Ultralytics", "task": "classify"})
    tagged = tmp_path / "tagged.onnx"
    onnx.save(model, str(tagged))
    assert OnnxGraph(tagged, runtime).metadata["author"] == "Ultralytics"
    assert OnnxGraph(osnet_onnx, runtime).metadata.get("author") != "Ultralytics"
    real = integ.create_embedder
    monkeypatch.setattr(integ, "create_embedder", lambda cfg: real(replace(cfg, runtime=runtime)))
    assert build_reid(str(tagged)) is None
    assert isinstance(build_reid(str(osnet_onnx)), EmbedderReID)


# ---- register() and Ultralytics' own paths --------------------------------------------------------------


def _botsort_args(**changes):
    from ultralytics.utils import YAML, IterableSimpleNamespace
    from ultralytics.utils.checks import check_yaml

    args = IterableSimpleNamespace(**YAML.load(check_yaml("botsort.yaml")))
    for k, v in changes.items():
        setattr(args, k, v)
    return args


def test_register_is_idempotent_and_patches_only_botsort_init():
    from ultralytics.trackers.bot_sort import BOTSORT

    was = integ.is_registered()
    integ.unregister()
    plain = BOTSORT.__init__
    try:
        assert integ.register() is True and integ.register() is False
        assert BOTSORT.__init__ is not plain and getattr(BOTSORT.__init__, integ._ORIGINAL) is plain
        assert integ.unregister() is True and BOTSORT.__init__ is plain and integ.unregister() is False
    finally:
        if was:
            integ.register()


def test_auto_and_unknown_models_keep_ultralytics_behaviour(registered, osnet_onnx):
    from ultralytics.trackers.bot_sort import BOTSORT

    assert BOTSORT(_botsort_args()).encoder is None  # with_reid False
    auto = BOTSORT(_botsort_args(with_reid=True, model="auto")).encoder
    assert auto is not None and not isinstance(auto, EmbedderReID)  # the detector-features pass-through
    with pytest.raises(Exception, match="nope_model") as err:
        BOTSORT(_botsort_args(with_reid=True, model="nope_model"))  # Ultralytics' own error
    assert not isinstance(err.value, UserError)
    ours = BOTSORT(_botsort_args(with_reid=True, model=str(osnet_onnx), device="cpu"))
    assert isinstance(ours.encoder, EmbedderReID) and ours.args.with_reid is True and ours.encoder.dim == 512


def test_shipped_yamls_have_every_ultralytics_key_each_commented():
    import ultralytics

    theirs = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/trackers/botsort.yaml").read_text())
    for name, model in (("botsort_osnet.yaml", "osnet_x0_25_msmt17"), ("botsort_dinov2.yaml", "dinov2_vits14")):
        text = (ROOT / "configs" / name).read_text(encoding="utf-8")
        ours = yaml.safe_load(text)
        assert set(theirs) <= set(ours) and ours["with_reid"] is True and ours["model"] == model
        assert {k: ours[k] for k in theirs if k not in ("with_reid", "model")} == {
            k: v for k, v in theirs.items() if k not in ("with_reid", "model")
        }
        keys = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert len(keys) == len(ours) and all(" # (" in line for line in keys)


# ---- YOLO(...).track(...) end to end --------------------------------------------------------------------


@pytest.mark.slow
def test_yolo_track_with_the_shipped_osnet_yaml_and_real_weights(registered, yolov8n, monkeypatch, tmp_path):
    """configs/botsort_osnet.yaml as shipped: its catalogue name found in the weights folder, where the real
    torchreid-layout OSNet x0.25 weights are put under the catalogue's file name."""
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "osnet_x0_25_msmt17.pt").symlink_to(shared_path("weights/osnet_x0_25_msmt17_from_onnx.pth"))
    monkeypatch.setenv("MOT_DINOV3_WEIGHTS", str(weights))
    results, tracker, reads = track(yolov8n, ROOT / "configs" / "botsort_osnet.yaml", 4)
    assert tracker.encoder.embedder.name == "osnet"
    assert_tracked_with_our_reid(results, tracker, reads, 512, 4)


@pytest.mark.slow
def test_yolo_track_with_an_osnet_onnx_path(registered, yolov8n, osnet_onnx, tmp_path):
    results, tracker, reads = track(yolov8n, tracker_yaml(tmp_path, "botsort_osnet.yaml", model=str(osnet_onnx)), 3)
    assert tracker.encoder.embedder.name == "onnx"
    assert_tracked_with_our_reid(results, tracker, reads, 512, 3)


@pytest.mark.slow
def test_yolo_track_with_dinov2_vits14_from_a_local_folder(registered, yolov8n, dinov2_small_folder, tmp_path):
    """model: dinov2_vits14 (the shipped DINOv2 YAML) with reid_model_dir: the random-init DINOv2-S folder."""
    yaml_path = tracker_yaml(tmp_path, "botsort_dinov2.yaml", reid_model_dir=str(dinov2_small_folder))
    results, tracker, reads = track(yolov8n, yaml_path, 3, SMALL_SEQ)
    emb = tracker.encoder.embedder
    assert (emb.name, emb.cfg.model, emb.cfg.pooling) == ("dino", str(dinov2_small_folder), "cls")
    assert_tracked_with_our_reid(results, tracker, reads, 384, 3)


@pytest.mark.slow
def test_yolo_track_with_model_auto_still_uses_ultralytics(registered, yolov8n, tmp_path):
    results, tracker, _ = track(yolov8n, tracker_yaml(tmp_path, "botsort_osnet.yaml", model="auto"), 2)
    assert tracker.encoder is not None and not isinstance(tracker.encoder, EmbedderReID)
    assert results[-1].boxes.id is not None and len(results[-1].boxes.id) > 0
