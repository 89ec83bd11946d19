"""``embedder='osnet'``: OSNet in PyTorch on torchreid weights. The real OSNet x0.25 checkpoint gives the
ONNX export's vectors on real MOT17-09 crops; every variant's weights round-trip through the loader."""

import cv2
import numpy as np
import pytest
import torch

from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import MissingFileError, UserError
from mot_dinov3.features.base import CropEmbedder
from mot_dinov3.features.factory import CROP_BACKENDS, create_embedder
from mot_dinov3.features.osnet import VARIANTS, OSNet, fuse_batchnorm, load_osnet
from mot_dinov3.io import read_mot_txt

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest


def mot17_crops(seq, embedder, frames=(1, 60, 120, 180, 240, 300, 360, 420), per_frame=8):
    """Up to ``per_frame`` visible pedestrians' crops from each of ``frames`` (the gt boxes)."""
    gt = read_mot_txt(seq / "gt" / "gt.txt")
    crops = []
    for f in frames:
        rows = gt[(gt[:, 0] == f) & (gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] > 0.3)][:per_frame]
        xyxy = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]].astype(np.float32)
        crops += embedder.crop(cv2.imread(str(seq / "img1" / f"{f:06d}.jpg")), xyxy)
    return crops


RUNTIMES = ["openvino", "onnxruntime", "torch"]


def needs(runtime):
    """``runtime`` as a parameter, skipped where its package is missing (openvino is optional)."""
    import importlib.util

    missing = runtime == "openvino" and importlib.util.find_spec("openvino") is None
    return pytest.param(runtime, marks=pytest.mark.skipif(missing, reason="the openvino package is not installed"))


@pytest.mark.parametrize("runtime", [needs(r) for r in RUNTIMES])
def test_osnet_matches_the_onnx_export_on_real_crops(osnet_pth, osnet_onnx, mot17_09, runtime):
    onnx = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx), runtime="onnxruntime"))
    cfg = EmbedderConfig(name="osnet", model=str(osnet_pth), batch_size=16, device="cpu", runtime=runtime)
    emb = create_embedder(cfg)
    # on the CPU the network is exported to ONNX in memory unless runtime is torch
    assert (emb.graph.runtime if emb.graph else "torch") == runtime
    assert emb.variant == "osnet_x0_25" and emb.dim == 512 and emb.size_hw == onnx.size_hw == (256, 128)
    assert "osnet" in CROP_BACKENDS and isinstance(emb, CropEmbedder)
    assert (emb.crop_pad, emb.crop_square) == (onnx.crop_pad, onnx.crop_square)
    crops = mot17_crops(mot17_09, emb)
    assert len(crops) >= 40
    a, b = onnx.embed_crops(crops), emb.embed_crops(crops)
    assert b.shape == (len(crops), 512) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    cos = (a * b).sum(axis=1)
    assert cos.min() >= 0.9999, f"min cosine {cos.min():.6f} over {len(crops)} crops"
    # embed(frame, boxes) is embed_crops(crop(frame, boxes)); the batch size changes nothing; no boxes: (0, D)
    image = cv2.imread(str(mot17_09 / "img1/000001.jpg"))
    boxes = np.array([[100, 400, 180, 640], [900, 300, 1000, 560]], np.float32)
    np.testing.assert_allclose(emb.embed(image, boxes), emb.embed_crops(emb.crop(image, boxes)), atol=1e-6)
    emb.max_batch = 5
    np.testing.assert_allclose(emb.embed_crops(crops[:12]), b[:12], atol=1e-5)
    assert emb.embed(image, np.zeros((0, 4), np.float32)).shape == (0, 512)


def test_files_that_are_not_osnet_weights_are_refused(tmp_path, osnet_pth):
    with pytest.raises(MissingFileError, match=r"embed_model='.*nowhere\.pth'"):
        create_embedder(EmbedderConfig(name="osnet", model=str(tmp_path / "nowhere.pth")))
    with pytest.raises(UserError, match="embed_model="):
        create_embedder(EmbedderConfig(name="osnet", model=None))
    (tmp_path / "text.pth").write_text("not a checkpoint")
    torch.save({"weight": torch.randn(4, 3), "bias": torch.zeros(4)}, tmp_path / "tiny.pth")
    torch.save({"state_dict": {"conv1.conv.weight": torch.randn(8, 3, 7, 7)}}, tmp_path / "stem_only.pth")
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "no_tensors.pth")
    for bad in ("text.pth", "tiny.pth", "stem_only.pth", "no_tensors.pth"):
        with pytest.raises(UserError) as err:
            create_embedder(EmbedderConfig(name="osnet", model=str(tmp_path / bad)))
        assert not isinstance(err.value, MissingFileError) and "\n" not in str(err.value)
    # the file name says x0.25 but the tensors are OSNet-AIN's: strict loading tells
    torch.save(OSNet(VARIANTS["osnet_ain_x0_25"]).state_dict(), tmp_path / "osnet_x0_25_market.pth")
    with pytest.raises(UserError, match="not the weights of osnet_x0_25"):
        load_osnet(tmp_path / "osnet_x0_25_market.pth")
    with pytest.raises(UserError, match="unknown; choose one of osnet_x1_0"):
        load_osnet(osnet_pth, variant="osnet_x2_0")


def test_every_variant_round_trips_and_folds_its_batchnorm(tmp_path):
    """Random weights of each variant, saved as torchreid would (DataParallel prefixes, a classifier head,
    wrapped in a checkpoint dict), load strictly under a name that does not say the variant."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 32)
    for i, (name, variant) in enumerate(VARIANTS.items()):
        model = OSNet(variant).eval()
        for m in model.modules():  # non-trivial running statistics, so folding them is tested
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        state = {f"module.{k}": v for k, v in model.state_dict().items()}
        state["module.classifier.weight"] = torch.randn(10, 512)
        ckpt = {"state_dict": state, "epoch": 1, "rank1": np.float32(0.5)}  # as torchreid's save_checkpoint
        torch.save(ckpt if i % 2 else state, tmp_path / f"reid_{i}.pth")
        loaded, inferred = load_osnet(tmp_path / f"reid_{i}.pth")
        assert inferred == name
        got = loaded.state_dict()
        assert all(torch.equal(got[k], v) for k, v in model.state_dict().items()), name
        with torch.inference_mode():
            ref = model(x)
            fused = fuse_batchnorm(loaded)(x.contiguous(memory_format=torch.channels_last))
        assert ref.shape == (2, 512)
        torch.testing.assert_close(fused, ref, rtol=1e-4, atol=1e-4)
