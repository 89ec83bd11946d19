"""Embedding backends on real frames: OSNet ONNX (real weights), DINOv2-S (real config, random init),
and the Hugging Face error paths (hub errors are mocked; nothing touches the network)."""

import cv2
import numpy as np
import pytest
from conftest import shared_path

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features import hub
from mot_dinov3.features.base import cut_windows, expand_boxes, to_blob
from mot_dinov3.features.clip import ClipEmbedder, load_clip
from mot_dinov3.features.dino import DinoEmbedder, load_dino, pool_tokens
from mot_dinov3.features.factory import create_embedder
from mot_dinov3.features.hf import Preprocess
from mot_dinov3.io import read_mot_txt


def gt_boxes(seq, frame):
    """(ids, xyxy) of the visible pedestrians in one gt frame."""
    gt = read_mot_txt(seq / "gt" / "gt.txt")
    rows = gt[(gt[:, 0] == frame) & (gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] > 0.8)]
    xyxy = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]].astype(np.float32)
    return rows[:, 1].astype(int), xyxy


def test_expand_boxes_square_and_reid_aspect():
    w = expand_boxes(np.array([[100, 100, 150, 200]]), 0.0, 1.0, (1000, 1000))
    assert (w[0, 2] - w[0, 0]) == (w[0, 3] - w[0, 1]) == 100
    w = expand_boxes(np.array([[100, 100, 150, 200]]), 0.1, 0.5, (1000, 1000))
    assert (w[0, 2] - w[0, 0]) * 2 == pytest.approx(w[0, 3] - w[0, 1], abs=2)
    edge = expand_boxes(np.array([[-20, -20, 5, 5]]), 0.5, None, (50, 50))
    assert edge.min() >= 0 and (edge[:, 2] > edge[:, 0]).all()


def test_crops_resized_at_cut_time_give_the_same_model_input(mot17_09):
    """cut_windows resizes as to_blob would (bilinear), so kept crops are small and nothing changes."""
    image = cv2.imread(str(mot17_09 / "img1/000001.jpg"))
    boxes = np.r_[gt_boxes(mot17_09, 1)[1][:5], [[1900, 1000, 1990, 1150]]].astype(np.float32)  # one past the corner
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for size_hw, square in (((256, 128), True), ((224, 224), True), ((224, 224), False)):
        windows = expand_boxes(boxes, 0.12, size_hw[1] / size_hw[0] if square else None, (1920, 1080))
        full = [image[y1:y2, x1:x2] for x1, y1, x2, y2 in windows]
        crops = cut_windows(image, boxes, size_hw, 0.12, square)
        assert all(c.shape == (*size_hw, 3) for c in crops)
        np.testing.assert_array_equal(to_blob(crops, size_hw, mean, std), to_blob(full, size_hw, mean, std))


def test_onnx_osnet_same_person_closer_than_others(osnet_onnx, mot17_09):
    emb = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    assert emb.size_hw == (256, 128) and emb.dim == 512
    ids1, b1 = gt_boxes(mot17_09, 1)
    ids2, b2 = gt_boxes(mot17_09, 10)
    e1 = emb.embed(cv2.imread(str(mot17_09 / "img1/000001.jpg")), b1)
    e2 = emb.embed(cv2.imread(str(mot17_09 / "img1/000010.jpg")), b2)
    assert e1.shape == (len(b1), 512) and e1.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(e1, axis=1), 1.0, atol=1e-5)
    sim = e1 @ e2.T
    common = [i for i in ids1 if i in ids2]
    assert len(common) >= 3
    same = [sim[list(ids1).index(i), list(ids2).index(i)] for i in common]
    diff = [sim[a, b] for a, i in enumerate(ids1) for b, j in enumerate(ids2) if i != j]
    assert np.mean(same) > 0.85 and np.mean(same) > np.mean(diff) + 0.15
    assert emb.embed(np.zeros((50, 50, 3), np.uint8), np.zeros((0, 4), np.float32)).shape == (0, 512)


def test_onnx_crops_the_box_itself_and_the_flags_override(osnet_onnx, mot17_09, dinov2_small_config):
    """ReID models see the detection box stretched to 256x128 unless --crop-pad / --crop-square say
    otherwise; the ViT backends keep a padded square window."""
    image = cv2.imread(str(mot17_09 / "img1/000001.jpg"))
    boxes = gt_boxes(mot17_09, 1)[1][:3]
    emb = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    assert (emb.crop_pad, emb.crop_square) == (0.0, False)
    x1, y1, x2, y2 = expand_boxes(boxes[:1], 0.0, None, (1920, 1080))[0]
    np.testing.assert_array_equal(
        emb.crop(image, boxes[:1])[0], cv2.resize(image[y1:y2, x1:x2], (128, 256), interpolation=cv2.INTER_LINEAR)
    )
    padded = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx), crop_pad=0.12, crop_square=True))
    for got, want in zip(padded.crop(image, boxes), cut_windows(image, boxes, (256, 128), 0.12, True)):
        np.testing.assert_array_equal(got, want)
    model, pre = _dinov2_small(dinov2_small_config)
    dino = DinoEmbedder(model, pre, EmbedderConfig())
    assert (dino.crop_pad, dino.crop_square) == (0.12, True)
    dino = DinoEmbedder(model, pre, EmbedderConfig(crop_pad=0.0, crop_square=False))
    assert (dino.crop_pad, dino.crop_square) == (0.0, False)


def test_crops_kept_from_earlier_frames_embed_like_the_frame_itself(osnet_onnx, mot17_09):
    """--embed-lazy keeps a track's crops and embeds them frames later, batched with other frames' crops."""
    emb = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    frames = [cv2.imread(str(mot17_09 / f"img1/{i:06d}.jpg")) for i in (1, 10)]
    boxes = [gt_boxes(mot17_09, i)[1][:4] for i in (1, 10)]
    boxes[0][0] = [-30, 500, 60, 700]  # a box past the left edge: its window is clipped the same way
    crops = [c for image, b in zip(frames, boxes) for c in emb.crop(image, b)]
    for c in crops:
        assert c.dtype == np.uint8 and c.shape == (256, 128, 3)  # kept at the model input size
    frames[0][:] = 0  # the frame is gone; the kept crops are not
    later = emb.embed_crops(crops)
    now = np.concatenate(
        [emb.embed(cv2.imread(str(mot17_09 / f"img1/{i:06d}.jpg")), b) for i, b in zip((1, 10), boxes)]
    )
    np.testing.assert_allclose(later, now, atol=1e-5)
    assert emb.embed_crops([]).shape == (0, 512)


def test_openvino_and_onnxruntime_give_the_same_vectors(osnet_onnx, mot17_09):
    """--embed-runtime: the same ONNX model in OpenVINO (held at FP32) and onnxruntime, on real crops of
    MOT17-09 people, batched and one by one; auto picks OpenVINO on a CPU where it is installed."""
    pytest.importorskip("openvino", reason="the openvino package is not installed")
    ov = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx), runtime="openvino"))
    ort = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx), runtime="onnxruntime"))
    auto = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx), device="cpu"))
    assert (ov.graph.runtime, ort.graph.runtime, auto.graph.runtime) == ("openvino", "onnxruntime", "openvino")
    assert ov.graph.precision == "f32"  # not bf16, which OpenVINO picks on AMX CPUs unless told
    assert (ov.size_hw, ov.dim) == (ort.size_hw, ort.dim) == ((256, 128), 512)
    crops = []
    for f in (1, 100, 200, 300, 400):
        crops += ov.crop(cv2.imread(str(mot17_09 / f"img1/{f:06d}.jpg")), gt_boxes(mot17_09, f)[1])
    assert len(crops) >= 10
    a, b = ov.embed_crops(crops), ort.embed_crops(crops)
    assert a.shape == b.shape and a.dtype == np.float32
    assert (a * b).sum(axis=1).min() >= 0.9999
    one_by_one = np.concatenate([ov.embed_crops([c]) for c in crops[:4]])
    np.testing.assert_allclose(one_by_one, a[:4], atol=1e-4)


def test_a_runtime_that_is_not_installed_is_named_with_the_fix(osnet_onnx, osnet_pth, monkeypatch):
    """Without openvino, auto falls back to onnxruntime; asking for openvino gives the pip line."""
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else find_spec(name, *a)
    )
    auto = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx), device="cpu"))
    assert auto.graph.runtime == "onnxruntime"
    for name, model in (("onnx", osnet_onnx), ("osnet", osnet_pth)):
        with pytest.raises(UserError, match=r"^embed_runtime='openvino' needs .*pip install openvino") as err:
            create_embedder(EmbedderConfig(name=name, model=str(model), device="cpu", runtime="openvino"))
        assert "\n" not in str(err.value)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_an_fp16_model_takes_float16_and_gives_float32(tmp_path, runtime):
    """An FP16 export (input tensor(float16)) gets its input cast; the vectors come back float32."""
    onnx = pytest.importorskip("onnx")
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the openvino package is not installed")
    from onnx import TensorProto, helper

    from mot_dinov3.features.onnx import OnnxGraph

    x = helper.make_tensor_value_info("images", TensorProto.FLOAT16, [None, 3, 16, 8])
    y = helper.make_tensor_value_info("features", TensorProto.FLOAT16, [None, 3])
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["p"]), helper.make_node("Flatten", ["p"], ["features"])]
    model = helper.make_model(helper.make_graph(nodes, "fp16", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "fp16.onnx"
    onnx.save(model, str(path))
    graph = OnnxGraph(path, runtime)
    blob = np.random.default_rng(0).random((2, 3, 16, 8), dtype=np.float32)
    out = graph(blob)
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out, blob.mean(axis=(2, 3)), atol=2e-3)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_onnx_errors_are_clean(tmp_path, runtime, osnet_onnx):
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="the openvino package is not installed")
    with pytest.raises(UserError, match=r"^embedder='onnx' needs embed_model="):
        create_embedder(EmbedderConfig(name="onnx", runtime=runtime))
    with pytest.raises(UserError, match="not found"):
        create_embedder(EmbedderConfig(name="onnx", model=str(tmp_path / "nope.onnx"), runtime=runtime))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    cut = tmp_path / "cut.onnx"  # a download that stopped half way
    cut.write_bytes(osnet_onnx.read_bytes()[:5000])
    for broken in (bad, cut):
        with pytest.raises(UserError, match=f"^embed_model='.*{broken.name}': {runtime} cannot load it") as err:
            create_embedder(EmbedderConfig(name="onnx", model=str(broken), runtime=runtime))
        assert "\n" not in str(err.value) and "Exception from" not in str(err.value)
    with pytest.raises(UserError, match="embed_runtime='torch' runs osnet weights in PyTorch, not an .onnx model"):
        create_embedder(EmbedderConfig(name="onnx", model=str(bad), runtime="torch"))
    with pytest.raises(UserError, match="embed_runtime='tensorrt': expected one of"):
        EmbedderConfig(name="onnx", runtime="tensorrt")
    with pytest.raises(UserError, match="unknown embedder"):
        create_embedder(EmbedderConfig(name="resnet"))


def _dinov2_small(config_dir, registers=0):
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, Dinov2WithRegistersConfig

    torch.manual_seed(0)
    cfg = AutoConfig.from_pretrained(config_dir)
    if registers:
        cfg = Dinov2WithRegistersConfig(
            **{k: v for k, v in cfg.to_dict().items() if k != "model_type"}, num_register_tokens=registers
        )
    return AutoModel.from_config(cfg), Preprocess.from_processor(AutoImageProcessor.from_pretrained(config_dir))


def test_dino_preprocess_read_from_the_real_processor_config(dinov2_small_config):
    _, pre = _dinov2_small(dinov2_small_config)
    assert pre.size_hw == (224, 224)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406)) and pre.std == pytest.approx((0.229, 0.224, 0.225))
    assert Preprocess.from_processor(None) == Preprocess()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dino_embeds_real_crops(dinov2_small_config, mot17_09, pooling):
    model, pre = _dinov2_small(dinov2_small_config)
    emb = DinoEmbedder(model, pre, EmbedderConfig(pooling=pooling, batch_size=2))
    _, boxes = gt_boxes(mot17_09, 1)
    assert len(boxes) >= 3  # more crops than one batch
    out = emb.embed(cv2.imread(str(mot17_09 / "img1/000001.jpg")), boxes)
    assert out.shape == (len(boxes), 384) and out.dtype == np.float32 and emb.dim == 384
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_cls_and_mean_pooling_differ_and_registers_are_excluded(dinov2_small_config):
    import torch

    model, pre = _dinov2_small(dinov2_small_config, registers=4)
    assert model.config.num_register_tokens == 4
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        h = model(pixel_values=x).last_hidden_state
    assert h.shape == (2, 1 + 4 + 256, 384)
    cls, mean = pool_tokens(h, 4, "cls"), pool_tokens(h, 4, "mean")
    torch.testing.assert_close(cls, h[:, 0])
    torch.testing.assert_close(mean, h[:, 5:].mean(1))  # CLS and the 4 registers are not patches
    assert not torch.allclose(mean, h[:, 1:].mean(1))
    emb = DinoEmbedder(model, pre, EmbedderConfig(pooling="mean"))
    assert emb.num_register_tokens == 4


def test_load_dino_from_a_local_folder_offline(dinov2_small_config, tmp_path, monkeypatch):
    import shutil

    model, _ = _dinov2_small(dinov2_small_config)
    model.save_pretrained(tmp_path / "dino")
    shutil.copy(dinov2_small_config / "preprocessor_config.json", tmp_path / "dino")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = load_dino(EmbedderConfig(model=str(tmp_path / "dino")))
    assert emb.dim == 384 and emb.preprocess.size_hw == (224, 224)


def _clip_folder(path):
    """A small random-init CLIP vision model with projection (ViT, 32 px patches, D 64) and CLIP's own
    processor config, saved as a local model folder (no CLIP weights exist offline)."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
        projection_dim=64,
    )
    CLIPVisionModelWithProjection(cfg).save_pretrained(path)
    CLIPImageProcessor().save_pretrained(path)
    return path


def test_clip_from_a_local_folder_embeds_real_crops(tmp_path, mot17_09, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = create_embedder(EmbedderConfig(name="clip", model=str(_clip_folder(tmp_path / "clip")), batch_size=2))
    assert isinstance(emb, ClipEmbedder) and emb.name == "clip" and emb.dim == 64
    assert emb.preprocess.size_hw == (224, 224)
    assert emb.preprocess.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))  # CLIP's, not ImageNet's
    _, boxes = gt_boxes(mot17_09, 1)
    image = cv2.imread(str(mot17_09 / "img1/000001.jpg"))
    out = emb.embed(image, boxes)
    assert out.shape == (len(boxes), 64) and out.dtype == np.float32 and len(boxes) > 2
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[:1], emb.embed(image, boxes[:1]), atol=1e-5)  # batching changes nothing
    assert np.abs(out[0] - out[1]).max() > 1e-3
    assert emb.embed(image, np.zeros((0, 4), np.float32)).shape == (0, 64)


def test_clip_load_failures_are_clean():
    with pytest.raises(UserError, match="not cached and the Hugging Face Hub is unreachable"):
        load_clip(EmbedderConfig(name="clip"), token="", loader=_raiser("offline"))
    with pytest.raises(UserError, match="neither a local folder"):
        load_clip(EmbedderConfig(name="clip", model="no/such-model"), token="", loader=_raiser("missing"))


@pytest.mark.slow
def test_track_with_the_clip_backend(tmp_path, yolov8n, monkeypatch):
    import json

    from mot_dinov3.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = shared_path("data/MOT17-mini/train/MOT17-02-FRCNN")
    js, txt = tmp_path / "s.json", tmp_path / "r.txt"
    rc = main(
        [
            str(a)
            for a in [
                "--source",
                src,
                "--det",
                yolov8n,
                "--classes",
                "0",
                "--embedder",
                "clip",
                "--embed-model",
                _clip_folder(tmp_path / "clip"),
                "--output",
                "",
                "--save-mot",
                txt,
                "--save-json",
                js,
                "--no-progress",
                "--max-frames",
                "3",
            ]
        ]
    )
    assert rc == 0
    summary = json.loads(js.read_text())
    assert summary["frames"] == 3 and summary["embeddings_computed"] > 0
    assert len(txt.read_text().splitlines()) > 0


_LOAD_SCRIPT = """
import logging, sys
logging.basicConfig(level=logging.WARNING)
from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features.dino import load_dino
try:
    print("dim", load_dino(EmbedderConfig(model="facebook/dinov2-small"), token="").dim)
except UserError as e:
    print("error", e)
"""


def _load_with_hub_down(cache, tmp_path):
    """load_dino for a hub id in a child process whose Hub endpoint is a closed local port."""
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "HF_HUB_CACHE": str(cache),
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HF_HUB_OFFLINE": "0",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_SCRIPT], env=env, capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    return out.stdout + out.stderr


def test_hub_down_and_model_not_cached_fails_at_once_without_retries(tmp_path):
    out = _load_with_hub_down(tmp_path / "empty-cache", tmp_path)
    assert "error Model 'facebook/dinov2-small' is not cached and the Hugging Face Hub is unreachable" in out
    assert "Retrying" not in out  # huggingface_hub's 5 backoff retries (about 23 s) are never reached


def test_hub_down_and_model_cached_loads_from_the_cache(dinov2_small_config, tmp_path):
    import shutil

    snapshot = tmp_path / "cache" / "models--facebook--dinov2-small" / "snapshots" / "0123abc"
    model, _ = _dinov2_small(dinov2_small_config)
    model.save_pretrained(snapshot)
    shutil.copy(dinov2_small_config / "preprocessor_config.json", snapshot)
    (tmp_path / "cache" / "models--facebook--dinov2-small" / "refs").mkdir()
    (tmp_path / "cache" / "models--facebook--dinov2-small" / "refs" / "main").write_text("0123abc")
    out = _load_with_hub_down(tmp_path / "cache", tmp_path)
    assert "dim 384" in out and "Retrying" not in out


def test_hub_reachable_makes_one_request(monkeypatch):
    import http.server
    import threading

    from huggingface_hub import constants

    class Handler(http.server.BaseHTTPRequestHandler):
        status = 200

        def do_HEAD(self):
            Handler.calls += 1
            self.send_response(Handler.status)
            self.end_headers()

        def log_message(self, *args):
            pass

    Handler.calls = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    try:
        assert hub.hub_reachable() and Handler.calls == 1
        Handler.status = 502  # what a proxy answers for a host it cannot reach
        assert not hub.hub_reachable() and Handler.calls == 2
    finally:
        server.shutdown()
        server.server_close()
    assert not hub.hub_reachable(timeout_s=1.0)  # the port is closed now
    assert Handler.calls == 2


def _response(status):
    import httpx

    return httpx.Response(status, request=httpx.Request("GET", "https://huggingface.co/api/models/x"))


def _raiser(kind):
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    def loader(model_id, token):
        loader.calls.append(model_id)
        if model_id == "facebook/dinov2-base":
            raise RuntimeError("stop: fallback reached")
        if kind == "gated":
            try:
                raise GatedRepoError("403 Client Error. Cannot access gated repo", response=_response(403))
            except GatedRepoError as e:
                raise OSError("You are trying to access a gated repo.") from e
        if kind == "offline":
            try:
                raise LocalEntryNotFoundError("no cache")
            except LocalEntryNotFoundError as e:
                raise OSError("We couldn't connect to 'https://huggingface.co' to load the files") from e
        if kind == "unsupported":
            raise ValueError(
                "The checkpoint you are trying to load has model type `dinov3_vit` but Transformers "
                "does not recognize this architecture."
            )
        raise OSError("x is not a local folder and is not a valid model identifier")

    loader.calls = []
    return loader


def test_gated_model_gives_the_seed_message():
    with pytest.raises(UserError) as ei:
        load_dino(EmbedderConfig(), token="", loader=_raiser("gated"))
    msg = str(ei.value)
    assert msg.startswith("Model 'facebook/dinov3-vitb16-pretrain-lvd1689m' is gated on Hugging Face.")
    assert "HF_TOKEN=hf_xxx" in msg and "huggingface-cli login" in msg and "facebook/dinov2-base" in msg


@pytest.mark.parametrize(
    "kind,needle",
    [
        ("offline", "embed_model=PATH"),
        ("unsupported", "pip install -U transformers"),
        ("missing", "neither a local folder"),
    ],
)
def test_other_load_failures_are_clean(kind, needle):
    with pytest.raises(UserError, match=needle.replace("-", r"\-").replace(" ", " ")) as ei:
        load_dino(EmbedderConfig(), token="", loader=_raiser(kind))
    if kind == "offline":
        assert "embedder='yolo'" in str(ei.value)


@pytest.mark.parametrize("kind", ["gated", "offline", "unsupported"])
def test_fallback_open_switches_to_dinov2_base(kind):
    loader = _raiser(kind)
    with pytest.raises(UserError, match="stop: fallback reached"):
        load_dino(EmbedderConfig(fallback_open=True), token="", loader=loader)
    assert loader.calls == ["facebook/dinov3-vitb16-pretrain-lvd1689m", "facebook/dinov2-base"]


def test_hf_token_bridges_legacy_names():
    assert hub.hf_token({"HUGGINGFACE_HUB_TOKEN": "a"}) == "a"
    assert hub.hf_token({"HUGGING_FACE_HUB_TOKEN": "b"}) == "b"
    assert hub.hf_token({"HF_TOKEN": "c", "HUGGINGFACE_HUB_TOKEN": "a"}) == "c"
    assert hub.hf_token({}) is None
