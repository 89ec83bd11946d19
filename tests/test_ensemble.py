"""``embedder='ensemble'`` (weighted concatenation of backends) and custom backends (``module:Class``,
entry points): spec parsing, the real OSNet ONNX + torch pair on MOT17-09 crops, detector-feature parts,
lazy memory's contract, and a user's class plugged into the tracker."""

from __future__ import annotations

import textwrap
from importlib import metadata

import cv2
import numpy as np
import pytest

import mot_dinov3
from mot_dinov3.config import EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.features import factory
from mot_dinov3.features.base import CropEmbedder, l2_normalize
from mot_dinov3.features.ensemble import CropEnsembleEmbedder, EnsembleEmbedder, PartSpec, parse_spec
from mot_dinov3.features.factory import available, check_name, create_embedder, embedder_traits
from mot_dinov3.io import read_mot_txt
from mot_dinov3.options import config_from_options

KNOWN = ("clip", "dino", "onnx", "osnet", "yolo")


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # conftest


def gt_frame(seq, f, n=8):
    """(image, xyxy) of up to ``n`` visible pedestrians of gt frame ``f``."""
    gt = read_mot_txt(seq / "gt" / "gt.txt")
    rows = gt[(gt[:, 0] == f) & (gt[:, 6] == 1) & (gt[:, 7] == 1) & (gt[:, 8] > 0.3)][:n]
    xyxy = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]].astype(np.float32)
    return cv2.imread(str(seq / "img1" / f"{f:06d}.jpg")), xyxy


# ---- the spec -----------------------------------------------------------------------------------------


def test_spec_parts_weights_and_paths():
    assert parse_spec("onnx:/w/osnet.onnx@0.7, yolo ,osnet:/w/o.pth", KNOWN) == [
        PartSpec("onnx", "/w/osnet.onnx", 0.7),
        PartSpec("yolo", None, 1.0),
        PartSpec("osnet", "/w/o.pth", 1.0),
    ]
    # the name ends at the first ':'; '@w' is a weight only when w is a number
    assert parse_spec("onnx:C:/m/a:b.onnx@2", KNOWN) == [PartSpec("onnx", "C:/m/a:b.onnx", 2.0)]
    assert parse_spec("onnx:/w/me@home.onnx", KNOWN) == [PartSpec("onnx", "/w/me@home.onnx", 1.0)]
    assert parse_spec("yolo@1e-1,dino", KNOWN) == [PartSpec("yolo", None, 0.1), PartSpec("dino", None, 1.0)]


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("", "needs its parts"),
        (None, "needs its parts"),
        ("onnx:a.onnx,,yolo", "part 2 is empty"),
        ("resnet:x.pt", "'resnet' is not an embedder"),
        ("none", "'none' is not an embedder"),
        ("ensemble:onnx:a.onnx", "ensembles do not nest"),
        ("onnx:a.onnx@0", "must be a positive number"),
        ("onnx:a.onnx@-1", "must be a positive number"),
        ("onnx:a.onnx@nan", "must be a positive number"),
        ("yolo@heavy", "weight 'heavy' is not a number"),
        ("onnx", "'onnx' needs its model"),
        ("osnet@2", "'osnet' needs its model"),
        ("onnx:", "empty model"),
        ("yolo:yolov8n.pt", "takes no model"),
    ],
)
def test_bad_specs_are_one_line_user_errors_naming_embed_model(spec, why):
    with pytest.raises(UserError, match=why) as err:
        parse_spec(spec, KNOWN)
    msg = str(err.value)
    assert msg.startswith(f"embed_model={spec!r}: ") and "\n" not in msg and "--" not in msg
    with pytest.raises(UserError, match=why):  # the same through the factory and the CLI's options
        create_embedder(EmbedderConfig(name="ensemble", model=spec))
    with pytest.raises(UserError, match=why):
        config_from_options("x.mp4", {"embedder": "ensemble", "embed_model": spec})


# ---- the ensemble -------------------------------------------------------------------------------------


def test_onnx_and_torch_osnet_ensemble_is_the_weighted_mean_of_cosines(osnet_onnx, osnet_pth, mot17_09):
    spec = f"onnx:{osnet_onnx}@0.7,osnet:{osnet_pth}@0.3"
    ens = create_embedder(EmbedderConfig(name="ensemble", model=spec, device="cpu"))
    assert isinstance(ens, CropEnsembleEmbedder) and isinstance(ens, CropEmbedder)
    assert ens.name == "ensemble" and ens.dim == 1024 and not ens.uses_detector_features and not ens.cost_free
    onnx, osnet = ens.parts
    image, xyxy = gt_frame(mot17_09, 1)
    image2, xyxy2 = gt_frame(mot17_09, 60)
    e = np.concatenate([ens.embed(image, xyxy), ens.embed(image2, xyxy2)])
    assert e.shape == (len(xyxy) + len(xyxy2), 1024) and e.dtype == np.float32 and len(e) >= 10
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    a = np.concatenate([onnx.embed(image, xyxy), onnx.embed(image2, xyxy2)])
    b = np.concatenate([osnet.embed(image, xyxy), osnet.embed(image2, xyxy2)])
    np.testing.assert_allclose(e @ e.T, 0.7 * (a @ a.T) + 0.3 * (b @ b.T), atol=1e-5)
    np.testing.assert_allclose(e[:, :512], l2_normalize(a) * np.sqrt(0.7 / 1.0), atol=1e-5)  # the layout
    # lazy memory's contract: embed_crops(crop(frame, boxes)) == embed(frame, boxes), crops of any frames
    crops = ens.crop(image, xyxy) + ens.crop(image2, xyxy2)
    assert len(crops) == len(e) and all(len(c) == 2 and c[0].shape == (256, 128, 3) for c in crops)
    np.testing.assert_allclose(ens.embed_crops(crops), e, atol=1e-6)
    assert ens.embed_crops([]).shape == (0, 1024) and ens.embed(image, np.zeros((0, 4), np.float32)).shape == (0, 1024)
    # equal weights: the seed's plain concatenation of the parts' unit vectors
    same = EnsembleEmbedder([(onnx, 2.0), (osnet, 2.0)])
    np.testing.assert_allclose(same.embed(image, xyxy), np.c_[a[: len(xyxy)], b[: len(xyxy)]] / np.sqrt(2), atol=1e-5)


class FakeFeatures:
    """A part that reads the detector's features, as ``yolo`` does."""

    name, dim, uses_detector_features, cost_free = "feats", 4, True, True

    def embed(self, image, xyxy, det_feats=None):
        return l2_normalize(det_feats)

    def synchronize(self):
        pass


def test_a_detector_features_part_makes_the_detector_capture_and_no_crop_embedder(osnet_onnx, mot17_09):
    onnx = create_embedder(EmbedderConfig(name="onnx", model=str(osnet_onnx)))
    ens = EnsembleEmbedder([(onnx, 1.0), (FakeFeatures(), 3.0)])
    assert type(ens) is EnsembleEmbedder and not isinstance(ens, CropEmbedder)
    assert ens.uses_detector_features and not ens.cost_free and ens.dim == 516
    image, xyxy = gt_frame(mot17_09, 1, n=4)
    feats = np.random.default_rng(0).normal(size=(len(xyxy), 4)).astype(np.float32)
    e = ens.embed(image, xyxy, feats)
    a, f = onnx.embed(image, xyxy), l2_normalize(feats)
    np.testing.assert_allclose(e @ e.T, 0.25 * (a @ a.T) + 0.75 * (f @ f.T), atol=1e-5)
    # the real yolo part, built by the factory (it loads nothing): the same, and decided before loading
    real = create_embedder(EmbedderConfig(name="ensemble", model=f"onnx:{osnet_onnx}@1,yolo@3"))
    assert real.uses_detector_features and not isinstance(real, CropEmbedder)
    np.testing.assert_allclose(real.embed(image, xyxy, feats), e, atol=1e-6)
    assert real.dim == 516
    assert embedder_traits("ensemble", f"onnx:{osnet_onnx},yolo") == (False, True)
    assert embedder_traits("ensemble", f"onnx:{osnet_onnx},osnet:x.pth") == (True, False)
    assert embedder_traits("onnx") == (True, False) and embedder_traits("yolo") == (False, True)


def test_options_decide_lazy_memory_from_the_parts(osnet_onnx, caplog):
    crops = config_from_options("x.mp4", {"embedder": "ensemble", "embed_model": f"onnx:{osnet_onnx},osnet:a.pth"})
    assert crops.scheduler.lazy is None  # lazy memory by default: the scheduler sees a CropEmbedder
    refresh = {"embedder": "ensemble", "embed_refresh": 5}
    assert (
        config_from_options("x.mp4", {**refresh, "embed_model": f"onnx:{osnet_onnx},osnet:a.pth"}).scheduler.lazy
        is False
    )
    assert "selects the refresh rules" in caplog.text
    caplog.clear()
    assert config_from_options("x.mp4", {**refresh, "embed_model": f"onnx:{osnet_onnx},yolo"}).scheduler.lazy is None
    assert "selects the refresh rules" not in caplog.text  # nothing to switch off: no crops later


@pytest.mark.slow
def test_a_real_run_with_an_onnx_and_yolo_ensemble(tmp_path, yolov8n, osnet_onnx, tud_campus):
    summary = mot_dinov3.track(
        str(tud_campus),
        det=str(yolov8n),
        imgsz=320,
        classes="0",
        embedder="ensemble",
        embed_model=f"onnx:{osnet_onnx}@0.7,yolo",
        max_frames=4,
        output=None,
        save_mot=str(tmp_path / "out.txt"),
        no_progress=True,
        cpu=True,
    )
    assert summary.frames == 4 and summary.embeddings_computed > 0  # the yolo part got the detector's features
    assert read_mot_txt(tmp_path / "out.txt").shape[0] > 0


# ---- custom backends ----------------------------------------------------------------------------------

PLUGIN = '''
import numpy as np
from mot_dinov3.features.base import l2_normalize


class MeanColour:
    """Each box's mean BGR colour: a ten-line custom backend."""

    name, dim, uses_detector_features, cost_free = "mean_colour", 3, False, False

    def __init__(self, cfg):
        self.cfg = cfg

    def embed(self, image, xyxy, det_feats=None):
        rows = [image[int(y1):int(y2), int(x1):int(x2)].reshape(-1, 3).mean(0) for x1, y1, x2, y2 in xyxy]
        return l2_normalize(np.array(rows, np.float32).reshape(-1, 3) + 1e-3)

    def synchronize(self):
        pass


class Broken:
    def __init__(self, cfg):
        pass

    def embed(self, image, xyxy, det_feats=None):
        return None

NOT_CALLABLE = 3
'''


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "my_embedders.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_embedders"


def test_a_custom_backend_by_module_and_class_tracks(plugin_module, mot17_09):
    name = f"{plugin_module}:MeanColour"
    check_name(name)
    assert embedder_traits(name) == (False, False)
    emb = create_embedder(EmbedderConfig(name=name, model="anything"))
    assert emb.name == "mean_colour" and emb.cfg.model == "anything"
    mot = mot_dinov3.MultiObjectTracker(embedder=name)
    assert mot.embedder.name == "mean_colour" and not mot.lazy
    for f in (1, 2, 3):
        image, xyxy = gt_frame(mot17_09, f)
        dets = np.c_[xyxy, np.full(len(xyxy), 0.9), np.zeros(len(xyxy))].astype(np.float32)
        out = mot.update(dets, image)
    assert out.shape[0] > 0 and mot.stats.frames == 3
    assert any(t.embedding is not None for t in mot._tracker.tracks)
    # in an ensemble too? only registered names are parts; a custom class joins one as an instance
    ens = EnsembleEmbedder([(emb, 1.0), (emb, 1.0)])
    assert ens.dim == 6 and not isinstance(ens, CropEmbedder)


@pytest.mark.parametrize(
    ("suffix", "why"),
    [
        ("nowhere_at_all:Cls", "cannot load it \\(ModuleNotFoundError"),
        ("{mod}:Missing", "cannot load it \\(AttributeError"),
        ("{mod}:NOT_CALLABLE", "is not callable"),
        ("{mod}:Broken", "lacks name, dim, uses_detector_features, cost_free, synchronize"),
    ],
)
def test_a_bad_custom_backend_is_a_one_line_user_error(plugin_module, suffix, why):
    name = suffix.format(mod=plugin_module)
    with pytest.raises(UserError, match=why) as err:
        create_embedder(EmbedderConfig(name=name))
    msg = str(err.value)
    assert msg.startswith(f"embedder={name!r}: ") and "\n" not in msg and "--" not in msg
    with pytest.raises(ValueError, match=why):
        mot_dinov3.MultiObjectTracker(embedder=name)


def test_an_entry_point_registers_a_name(plugin_module, monkeypatch, mot17_09):
    eps = metadata.EntryPoints(
        [metadata.EntryPoint("mean-colour", f"{plugin_module}:MeanColour", factory.PLUGIN_GROUP)]
    )
    real = metadata.entry_points
    monkeypatch.setattr(
        metadata, "entry_points", lambda **kw: eps if kw.get("group") == factory.PLUGIN_GROUP else real(**kw)
    )
    assert "mean-colour" in available() and "ensemble" in available() and available()[-1] == "none"
    check_name("mean-colour")
    emb = create_embedder(EmbedderConfig(name="mean-colour"))
    assert emb.name == "mean_colour"
    image, xyxy = gt_frame(mot17_09, 1, n=3)
    ens = create_embedder(EmbedderConfig(name="ensemble", model="mean-colour@2,mean-colour"))
    assert ens.dim == 6 and ens.embed(image, xyxy).shape == (3, 6)
    with pytest.raises(UserError, match="unknown embedder; choose one of .*mean-colour"):
        check_name("mean_colour")
