"""Dense DINO features (``mot_dinov3.dense``, ``mot-dinov3 dense``).

Geometry with a deterministic extractor injected through the :class:`PatchExtractor` interface (a fixed
random projection of each patch's pixels); real TUD / MOT17 frames with the random-init DINOv2-S (the real
config from ../shared, no weights); the three commands end to end and their error paths.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import shared_path

from mot_dinov3 import dense
from mot_dinov3.cli import main
from mot_dinov3.dense.features import resize_to_grid
from mot_dinov3.errors import MissingFileError, UserError

P = 14


class ProjectionExtractor:
    """(B, h*p, w*p, 3) uint8 -> (B, h, w, D): each patch's centred pixels times a fixed random matrix."""

    def __init__(self, patch_size: int = P, dim: int = 48, seed: int = 0):
        self.patch_size = patch_size
        rng = np.random.default_rng(seed)
        self.proj = rng.standard_normal((patch_size * patch_size * 3, dim)).astype(np.float32)
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(images.shape)
        b, height, width, _ = images.shape
        p = self.patch_size
        x = images.astype(np.float32) / 255.0 - 0.5
        x = x.reshape(b, height // p, p, width // p, p, 3).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, height // p, width // p, p * p * 3) @ self.proj


def noise_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- the grid ---------------------------------------------------------------------------------------------


def test_grid_keeps_the_aspect_ratio_and_maps_pixels_to_cells():
    g = dense.PatchGrid.for_image((480, 640), 14, 448)  # TUD frames
    assert g.grid_hw == (24, 32) and g.input_hw == (336, 448) and g.cell_wh == (20.0, 20.0)
    g = dense.PatchGrid.for_image((1080, 1920), 14)  # MOT17, the default size
    assert g.grid_hw == (18, 32) and g.input_hw == (252, 448)
    assert dense.PatchGrid.for_image((1080, 1920), 16, 448).grid_hw == (16, 28)  # DINOv3 patches
    g = dense.PatchGrid.for_image((480, 640), 14, 448)
    np.testing.assert_array_equal(g.to_cell([[0, 0], [639.9, 479.9], [20, 19.99]]), [[0, 0], [31, 23], [1, 0]])
    np.testing.assert_allclose(g.to_pixel([[0, 0], [31, 23]]), [[10, 10], [630, 470]])
    cells = np.array([[3, 4], [30, 2]])
    np.testing.assert_array_equal(g.to_cell(g.to_pixel(cells)), cells)
    assert g.contains([[640, 10], [-1, 0], [5, 5]]).tolist() == [False, False, True]
    with pytest.raises(UserError, match=r"^points_xy: \(640, 10\) is outside the 640x480 image"):
        g.to_cell([[640, 10]])
    with pytest.raises(UserError, match=r"^size=0: must be a positive"):
        dense.PatchGrid.for_image((480, 640), 14, 0)


def test_patch_features_resizes_to_whole_patches_and_batches():
    ext = ProjectionExtractor()
    img = noise_image(480, 640)
    feat, grid = dense.patch_features(img, model=ext, size=224, return_grid=True)
    assert feat.shape == (12, 16, 48) and feat.dtype == np.float32 and grid.grid_hw == (12, 16)
    assert ext.calls == [(1, 168, 224, 3)]
    batch = dense.patch_features(np.stack([img, img[::-1].copy()]), model=ext, size=224)
    assert batch.shape == (2, 12, 16, 48)
    np.testing.assert_allclose(batch[0], feat, atol=1e-5)
    with pytest.raises(UserError, match="different sizes"):
        dense.patch_features([img, img[:100]], model=ext)
    with pytest.raises(UserError, match="expected"):
        dense.patch_features(np.zeros((10, 10), np.uint8), model=ext)


def test_stream_features_batches_frames_and_keeps_their_order():
    ext = ProjectionExtractor()
    frames = [noise_image(140, 168, seed=i) for i in range(5)]
    out = list(dense.stream_features(frames, ext, size=168, batch_size=2))
    assert [c[0] for c in ext.calls] == [2, 2, 1]  # once per frame, in batches
    for f, (feat, grid) in zip(frames, out):
        np.testing.assert_allclose(feat, ext(f[None])[0], atol=1e-5)
        assert grid.grid_hw == (10, 12)


# -- matching ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pca_dim", [None, 16])
@pytest.mark.parametrize("k", [(2, 0), (3, 1), (0, 2)])
def test_an_image_shifted_by_k_patches_gives_matches_shifted_by_k(k, pca_dim):
    kx, ky = k
    ext = ProjectionExtractor()
    h, w = 10, 12
    big = noise_image((h + ky) * P, (w + kx) * P, seed=3)
    a = big[ky * P :, kx * P :].copy()  # a starts k patches into the scene
    b = big[: h * P, : w * P].copy()  # b sees the same scene k patches to the right / down
    fa, ga = dense.patch_features(a, ext, size=w * P, return_grid=True)
    fb, gb = dense.patch_features(b, ext, size=w * P, return_grid=True)
    cols, rows = np.meshgrid(np.arange(w - kx), np.arange(h - ky))  # cells of a that b sees
    cells = np.stack([cols.ravel(), rows.ravel()], axis=1)
    m = dense.match_points(fa, fb, cells, pca_dim=pca_dim, mutual=True)
    np.testing.assert_array_equal(m.cells_b, cells + [kx, ky])
    assert m.mutual is not None and m.mutual.all()
    if pca_dim is None:
        np.testing.assert_allclose(m.similarity, 1.0, atol=1e-5)
    # in pixels: the match of a point is the same point of the scene, k patches further
    xy = ga.to_pixel(cells[:5]) + 3.0
    np.testing.assert_allclose(
        gb.to_pixel(dense.match_points(fa, fb, ga.to_cell(xy)).cells_b), xy - 3 + [kx * P, ky * P]
    )


def test_match_points_checks_its_inputs():
    f = np.random.default_rng(0).standard_normal((4, 5, 8)).astype(np.float32)
    m = dense.match_points(f, f, [[1.7, 2.2]])
    assert m.cells_a.tolist() == [[1, 2]] and m.cells_b.tolist() == [[1, 2]] and m.mutual is None
    assert len(dense.match_points(f, f, np.zeros((0, 2)))) == 0
    with pytest.raises(UserError, match=r"^points_a: cell \(5, 0\) is outside the 5x4 patch grid"):
        dense.match_points(f, f, [[5, 0]])
    with pytest.raises(UserError, match="one D"):
        dense.match_points(f, f[..., :4], [[0, 0]])
    with pytest.raises(UserError, match=r"^pca_dim=9: must be between 1 and the feature size 8"):
        dense.match_points(f, f, [[0, 0]], pca_dim=9)


# -- PCA --------------------------------------------------------------------------------------------------


def test_pca_rgb_and_the_foreground_split():
    rng = np.random.default_rng(1)
    h, w, d = 12, 16, 32
    fg_dir, bg_dir = rng.standard_normal(d), rng.standard_normal(d)
    mask = np.zeros((h, w), bool)
    mask[3:8, 4:10] = True  # an object covering a minority of the patches
    feat = np.where(mask[..., None], fg_dir * 3, bg_dir * 3) + 0.3 * rng.standard_normal((h, w, d))
    np.testing.assert_array_equal(dense.foreground_mask(feat), mask)
    rgb = dense.pca_rgb(feat, size_hw=(480, 640))
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8 and rgb.std() > 10
    fg = dense.pca_rgb(feat, foreground=True)
    assert fg.shape == (h, w, 3) and (fg[~mask] == 0).all() and fg[mask].max() > 200
    assert (dense.pca_rgb(feat, foreground=mask) == fg).all()
    grey = dense.pca_rgb(feat, n=1)
    assert (grey[..., 0] == grey[..., 2]).all()
    p = dense.fit_pca(feat.reshape(-1, d), 3)
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(3), atol=1e-4)
    assert p.variance[0] >= p.variance[1] >= p.variance[2]
    with pytest.raises(UserError, match=r"^n=4"):
        dense.pca_rgb(feat, n=4)


# -- point tracking ---------------------------------------------------------------------------------------


def square_video(n: int = 54, size_hw=(168, 224), side: int = 56, start=(35, 49), step: int = 4, seed: int = 0):
    """Frames of a smoothly textured square moving ``step`` px a frame to the right over changing faint
    noise (until it has left), and the true (x, y) of the point at the square's centre in each frame."""
    rng = np.random.default_rng(seed)
    tex = cv2.GaussianBlur(rng.integers(0, 256, (side, side, 3)).astype(np.float32), (0, 0), 5)
    tex = ((tex - tex.mean()) / tex.std() * 60 + 128).clip(0, 255).astype(np.uint8)
    h, w = size_hw
    frames, truth = [], []
    for t in range(n):
        img = (128 + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
        x0, y0 = start[0] + step * t, start[1]
        xs, xe = max(0, x0), min(w, x0 + side)
        if xe > xs:
            img[y0 : y0 + side, xs:xe] = tex[:, xs - x0 : xe - x0]
        frames.append(img)
        truth.append((x0 + side / 2, y0 + side / 2))
    return frames, np.asarray(truth)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_point_on_a_moving_square_is_tracked_and_lost_when_the_square_leaves(seed):
    frames, truth = square_video(seed=seed)
    ext = ProjectionExtractor(dim=128, seed=seed)
    out = list(dense.track_points(frames, truth[:1], ext, size=224, window=2, lost_below=0.55))
    assert len(out) == len(frames) and out[0].xy[0].tolist() == truth[0].tolist()
    w = frames[0].shape[1]
    phases = {"in": 0, "edge": 0, "gone": 0}
    for pf, xy in zip(out, truth):
        if xy[0] < w:  # the point is in the frame: tracked within one patch
            phases["in"] += 1
            assert not pf.lost[0] and np.abs(pf.xy[0] - xy).max() <= P, (pf.index, pf.xy[0], xy)
        elif xy[0] - 28 < w:  # the point has left, part of the square is still in: lost or held at the edge
            phases["edge"] += 1
            assert pf.lost[0] or np.abs(pf.xy[0] - np.minimum(xy, [w, np.inf])).max() <= P, pf.index
        else:  # the whole square has left: lost, at the edge where it left (no jump)
            phases["gone"] += 1
            assert pf.lost[0] and pf.xy[0][0] > w - 2 * P, (pf.index, pf.xy[0])
    assert phases["in"] >= 40 and phases["edge"] >= 5 and phases["gone"] >= 5, phases


def test_point_tracker_ema_and_arguments():
    rng = np.random.default_rng(0)
    f = rng.standard_normal((6, 8, 16)).astype(np.float32)
    tr = dense.PointTracker(f, [[2, 3]], window=1, ema=0.5)
    s = tr.update(np.roll(f, 1, axis=1))  # everything moves one cell right
    assert s.cells.tolist() == [[3, 3]] and not s.lost[0] and s.similarity[0] == pytest.approx(1.0)
    s = tr.update(np.roll(f, 4, axis=1))  # three more: outside the window
    assert s.lost[0] and s.cells.tolist() == [[3, 3]]
    with pytest.raises(UserError, match=r"^ema=2"):
        dense.PointTracker(f, [[0, 0]], ema=2)
    with pytest.raises(UserError, match="outside the 8x6 patch grid"):
        dense.PointTracker(f, [[8, 0]])


# -- the DINO extractor on real frames (random-init DINOv2-S) ---------------------------------------------


@pytest.fixture(scope="module")
def vits14(dinov2_small_config):
    import torch
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    return AutoModel.from_config(AutoConfig.from_pretrained(dinov2_small_config))


@pytest.fixture(scope="module")
def vits14_folder(vits14, dinov2_small_config, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("dinov2-small-random")
    vits14.save_pretrained(folder)
    shutil.copy(dinov2_small_config / "preprocessor_config.json", folder)
    return folder


def test_dino_patch_features_on_real_frames(vits14, tud_campus, mot17_09):
    import torch

    ext = dense.DinoPatchExtractor(vits14, device="cpu")
    assert ext.patch_size == 14 and ext.num_register_tokens == 0 and isinstance(ext, dense.PatchExtractor)
    tud = cv2.imread(str(tud_campus / "img1/000001.jpg"))
    mot = cv2.imread(str(mot17_09 / "img1/000001.jpg"))
    f, g = dense.patch_features(tud, ext, size=224, return_grid=True)
    assert f.shape == (12, 16, 384) and f.dtype == np.float32 and g.input_hw == (168, 224)
    f2, g2 = dense.patch_features(mot, ext, size=224, return_grid=True)
    assert f2.shape == (9, 16, 384) and g2.image_hw == (1080, 1920)
    # exactly the patch tokens: CLS (token 0) excluded
    from mot_dinov3.features.base import to_blob

    x = torch.from_numpy(to_blob([resize_to_grid(tud, g)], g.input_hw, ext._mean, ext._std))
    with torch.no_grad():
        hidden = vits14(pixel_values=x).last_hidden_state
    assert hidden.shape == (1, 1 + 12 * 16, 384)
    np.testing.assert_allclose(f, hidden[0, 1:].numpy().reshape(12, 16, 384), atol=1e-4)
    rgb = dense.pca_rgb(f, size_hw=tud.shape[:2])
    assert rgb.shape == (480, 640, 3) and rgb.dtype == np.uint8
    assert dense.pca_rgb(f, foreground=True).shape == (12, 16, 3)


def test_register_tokens_are_excluded(dinov2_small_config):
    import torch
    from transformers import AutoConfig, AutoModel, Dinov2WithRegistersConfig

    torch.manual_seed(0)
    base = AutoConfig.from_pretrained(dinov2_small_config).to_dict()
    skip = ("model_type", "out_features", "out_indices", "stage_names")  # the backbone fields follow the depth
    small = {k: v for k, v in base.items() if k not in skip} | {"num_hidden_layers": 2}
    model = AutoModel.from_config(Dinov2WithRegistersConfig(**small, num_register_tokens=4))
    ext = dense.DinoPatchExtractor(model, device="cpu")
    assert ext.num_register_tokens == 4
    img = noise_image(5 * 14, 7 * 14)
    f = ext(img[None])
    from mot_dinov3.features.base import to_blob

    x = torch.from_numpy(to_blob([img], img.shape[:2], ext._mean, ext._std))
    with torch.no_grad():
        hidden = model(pixel_values=x).last_hidden_state
    assert hidden.shape == (1, 1 + 4 + 35, 384) and f.shape == (1, 5, 7, 384)
    np.testing.assert_allclose(f[0], hidden[0, 5:].numpy().reshape(5, 7, 384), atol=1e-4)


def test_models_load_from_a_folder_and_by_torch_hub_name(vits14_folder, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ext = dense.load_extractor(vits14_folder, device="cpu")
    assert ext.patch_size == 14 and ext.dim == 384
    assert dense.resolve_model("dinov2_vits14") == "facebook/dinov2-small"
    assert dense.resolve_model("dinov3_vits16") == "facebook/dinov3-vits16-pretrain-lvd1689m"
    assert dense.resolve_model(str(vits14_folder)) == str(vits14_folder)
    with pytest.raises(UserError, match=r"^model='osnet_x0_25_msmt17': a catalogue model of the osnet family"):
        dense.resolve_model("osnet_x0_25_msmt17")
    with pytest.raises(UserError, match=r"^model 'dinov2_vits': not in the model catalogue; did you mean"):
        dense.resolve_model("dinov2_vits")
    with pytest.raises(MissingFileError, match=r"^model='/nope/dino': no such folder"):
        dense.load_extractor("/nope/dino")
    with pytest.raises(UserError, match=r"not cached and the Hugging Face Hub is unreachable") as e:
        dense.load_extractor("facebook/dinov2-small")
    assert "model=PATH" in str(e.value) and "embed" not in str(e.value)


# -- the CLI ----------------------------------------------------------------------------------------------


def test_cli_match_writes_the_picture_and_json(vits14_folder, tud_campus, tmp_path, capsys):
    a, b = tud_campus / "img1/000001.jpg", tud_campus / "img1/000005.jpg"
    out = tmp_path / "m" / "match.png"
    args = ["dense", "match", a, b, "--points", "100,200; 320,240;600,50", "--model", vits14_folder]
    rc = main([*map(str, args), "--size", "224", "--pca-dim", "16", "--mutual", "--output", str(out), "--save-json"])
    assert rc == 0, capsys.readouterr().err
    pic = cv2.imread(str(out))
    assert pic.shape == (480, 1280, 3)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["grid1_hw"] == [12, 16] and doc["pca_dim"] == 16 and len(doc["matches"]) == 3
    for m in doc["matches"]:
        assert 0 <= m["b"][0] < 640 and 0 <= m["b"][1] < 480 and -1 <= m["similarity"] <= 1 and "mutual" in m
    assert doc["matches"][1]["a"] == [320.0, 240.0]
    assert "similarity" in capsys.readouterr().out


def test_cli_pca_writes_the_image_beside_its_pca(vits14_folder, mot17_09, tmp_path, capsys):
    img = mot17_09 / "img1/000001.jpg"
    out = tmp_path / "pca.jpg"
    assert main(["dense", "pca", str(img), "--model", str(vits14_folder), "--size", "224", "--output", str(out)]) == 0
    assert cv2.imread(str(out)).shape == (1080, 3840, 3)
    assert "9x16 patches x 384" in capsys.readouterr().out
    out2 = tmp_path / "pca_fg.jpg"
    args = ["dense", "pca", str(img), "--model", str(vits14_folder), "--size", "112", "--foreground"]
    assert main([*args, "--output", str(out2)]) == 0 and out2.is_file()


def test_cli_point_track_writes_the_video_and_csv(vits14_folder, tud_campus, tmp_path, capsys):
    out, table = tmp_path / "track.mp4", tmp_path / "track.csv"
    args = ["dense", "point-track", str(tud_campus), "--point", "300,250", "--point", "500,100"]
    args += ["--model", str(vits14_folder), "--size", "168", "--max-frames", "3", "--batch-size", "2"]
    assert main([*args, "--output", str(out), "--save-csv", str(table), "--no-progress"]) == 0
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    assert n == 3
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 6 and rows[0] == {
        "frame": "1",
        "point": "1",
        "x": "300.0",
        "y": "250.0",
        "similarity": "1.0000",
        "lost": "0",
    }
    assert "3 frames, 2 points" in capsys.readouterr().out
    # a video file too
    video = shared_path("data/videos/mmtracking_demo.mp4")
    out2 = tmp_path / "demo.avi"
    args = ["dense", "point-track", str(video), "--point", "960,540", "--model", str(vits14_folder), "--size", "112"]
    assert main([*args, "--max-frames", "2", "--output", str(out2), "--no-progress"]) == 0 and out2.stat().st_size > 0


@pytest.mark.parametrize(
    "cmd,needle",
    [
        (["match", "{img}", "{img}", "--points", "10,10;abc"], "error: --points '10,10;abc': expected x,y pixel pairs"),
        (["match", "{img}", "{img}", "--points", "700,20"], "error: --points 700,20: outside IMG1"),
        (["match", "{img}", "{bad}", "--points", "1,1"], "error: IMG2='{bad}': not an image OpenCV can read"),
        (["match", "{missing}", "{img}", "--points", "1,1"], "error: IMG1='{missing}': no such file"),
        (["pca", "{bad}"], "error: IMG='{bad}': not an image OpenCV can read"),
        (["pca", "{img}", "--model", "/nope/dino"], "error: --model /nope/dino: no such folder"),
        (["pca", "{img}", "--model", "osnet_x0_25_msmt17"], "error: --model osnet_x0_25_msmt17: a catalogue model"),
        (["pca", "{img}", "--model", "facebook/dinov2-small"], "is not cached and the Hugging Face Hub is unreachable"),
        (["pca", "{img}", "--size", "0"], "error: --size 0: must be a positive"),
        (["pca", "{img}", "--output", "{tmp}/pca.mp4", "--model", "{model}"], "error: --output {tmp}/pca.mp4: OpenCV"),
        (["point-track", "{missing}", "--point", "1,1"], "error: source='{missing}': no such file or folder"),
        (["point-track", "{tud}", "--point", "1,999"], "error: --point 1,999: outside the frames (640x480 pixels)"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(cmd, needle, tmp_path, tud_campus, vits14_folder, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    names = {"img": tud_campus / "img1/000001.jpg", "bad": bad, "missing": tmp_path / "none.jpg", "tud": tud_campus}
    names |= {"tmp": tmp_path, "model": vits14_folder}
    argv = ["dense", *(c.format(**names) for c in cmd)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle.format(**names) in err and "Traceback" not in err
    if "unreachable" in needle:
        assert "--model PATH" in err and "embed" not in err
    else:
        assert err.count("\n") == 1, err


def test_cli_gated_model_message_names_the_dense_flags(tud_campus, capsys, monkeypatch):
    from mot_dinov3.features import hf

    class GatedRepoError(Exception):
        pass

    def gated(model_id, token, model_class="AutoModel"):
        raise GatedRepoError(f"Access to model {model_id} is restricted")

    monkeypatch.setattr(hf, "from_pretrained", gated)
    argv = ["dense", "pca", str(tud_campus / "img1/000001.jpg"), "--model", "dinov3_vits16"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Model 'facebook/dinov3-vits16-pretrain-lvd1689m' is gated on Hugging Face" in err
    assert "--model facebook/dinov2-base (or add --fallback-open)" in err and "dinov3=" not in err


def test_the_message_check_covers_the_dense_library_and_not_its_cli():
    from test_cli_messages import SRC, library_files

    files = {p.relative_to(SRC).as_posix() for p in library_files()}
    assert {"dense/__init__.py", "dense/features.py", "dense/match.py", "dense/pca.py", "dense/point_track.py"} <= files
    assert "dense/cli.py" not in files  # a front end: it prints, and names flags
