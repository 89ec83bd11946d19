"""The model catalogue (``mot_dinov3.models``) and ``mot-dinov3 models``: entries, list / recommend / use,
downloads from a local HTTP server, and catalogue names in runs."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from mot_dinov3 import models
from mot_dinov3.cli import main
from mot_dinov3.config import DEFAULT_CLIP_MODEL, DEFAULT_DINO_MODEL, EmbedderConfig
from mot_dinov3.errors import UserError
from mot_dinov3.models import catalogue as cat
from mot_dinov3.models import fetch as dl
from mot_dinov3.options import build_run_config, track_parser

PAYLOAD = bytes(range(256)) * 512  # 128 KiB
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Every test gets its own weights folder and user config file: the real ones are never read."""
    monkeypatch.setenv(cat.WEIGHTS_ENV, str(tmp_path / "weights"))
    monkeypatch.setenv(cat.CONFIG_ENV, str(tmp_path / "config" / "config.json"))
    return tmp_path


def run(capsys, *args):
    rc = main(["models", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def run_config(*flags):
    return build_run_config(track_parser().parse_args(["--source", "v.mp4", *flags]))


# ---- the entries ----------------------------------------------------------------------------------------


def test_every_entry_is_well_formed():
    entries = models.list_models()
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for e in entries:
        assert re.fullmatch(r"[a-z0-9_]+", e.name), e.name
        assert e.family in cat.FAMILIES and e.task in cat.TASKS and e.speed in cat.SPEEDS, e.name
        assert e.backend is None or e.backend in cat.BACKENDS, e.name
        assert isinstance(e.dim, int) and e.dim > 0, e.name
        assert len(e.input) == 2 and all(v > 0 for v in e.input), e.name
        assert e.url is None or re.match(r"https?://", e.url), e.name
        assert (e.file is None) != (e.hf_id is None), f"{e.name}: a file entry or a hub entry"
        assert e.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", e.sha256), e.name
        assert e.ms_per_crop_cpu is None or e.ms_per_crop_cpu > 0, e.name
        assert e.source and e.license, e.name
        if e.file and e.url is None:
            assert e.notes, f"{e.name}: no URL, so a note on where it comes from"
    assert {e.family for e in entries} == set(cat.FAMILIES)
    assert {e.task for e in entries} == set(cat.TASKS)


def test_the_catalogue_covers_the_issue_list():
    names = {e.name for e in models.list_models()}
    for width in ("x0_25", "x0_5", "x0_75", "x1_0"):
        assert {f"osnet_{width}_msmt17", f"osnet_{width}_market1501"} <= names
    assert {"osnet_ain_x1_0_msmt17", "osnet_ibn_x1_0_msmt17", "clip_reid_vit_b16_market1501"} <= names
    assert {"mobilenetv2_x1_4_msmt17", "resnet50_msmt17", "clip_vit_b32", "clip_vit_b16", "clip_vit_l14"} <= names
    for size in "sblg":
        assert {f"dinov2_vit{size}14", f"dinov2_vit{size}14_reg"} <= names
    assert len(models.list_models("dinov3")) >= 4
    # the backends' built-in defaults are catalogue entries too
    hub_ids = {e.hf_id for e in models.list_models()}
    assert {DEFAULT_DINO_MODEL, DEFAULT_CLIP_MODEL} <= hub_ids


def test_every_recommendation_is_a_runnable_entry_with_a_reason():
    for task in cat.TASKS:
        for goal in cat.GOALS:
            for device in cat.DEVICES:
                entry, reason = models.recommend(goal, device, task)
                assert entry.backend and entry.task == task
                assert reason and "\n" not in reason
    assert models.recommend("speed", "cuda:0")[0] == models.recommend("speed", "cuda")[0]
    with pytest.raises(UserError, match="goal='fastest'"):
        models.recommend("fastest")


def test_catalogue_yaml_is_package_data():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())
    assert "catalogue.yaml" in pyproject["tool"]["setuptools"]["package-data"]["mot_dinov3.models"]


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UserError, match="did you mean osnet_x1_0_msmt17"):
        models.get("osnet_x1_0_msmt")


def test_dinov2_torch_hub_names_map_to_hugging_face_ids():
    sizes = {"s": "small", "b": "base", "l": "large", "g": "giant"}
    for s, word in sizes.items():
        assert models.hub_model(f"dinov2_vit{s}14") == (f"facebook/dinov2-{word}", "cls")
        assert models.hub_model(f"dinov2_vit{s}14_reg") == (f"facebook/dinov2-with-registers-{word}", "cls")
    assert models.hub_model("dinov2_vits14", return_clstoken=False) == ("facebook/dinov2-small", "mean")
    with pytest.raises(UserError, match="not a DINOv2"):
        models.hub_model("clip_vit_b32")


# ---- the CLI: list / recommend / use --------------------------------------------------------------------


def test_list_json_and_table(capsys):
    rc, out, _ = run(capsys, "list", "--json")
    data = json.loads(out)
    assert rc == 0 and [m["name"] for m in data["models"]] == [e.name for e in models.list_models()]
    assert not any(m["cached"] or m["default"] for m in data["models"] if m["file"])
    first = data["models"][0]
    for key in ("name", "family", "task", "dim", "input", "speed", "ms_per_crop_cpu", "url", "license", "cached"):
        assert key in first
    rc, out, _ = run(capsys, "list", "--family", "dinov2")
    lines = out.strip().splitlines()
    assert rc == 0 and lines[0].split()[:3] == ["name", "family", "task"]
    assert len(lines) == 1 + 8 + 1 and all(" dinov2 " in line for line in lines[1:-1])
    assert "weights folder:" in lines[-1]


def test_recommend_prints_one_line(capsys):
    rc, out, _ = run(capsys, "recommend", "speed", "--device", "cpu")
    assert rc == 0 and out.count("\n") == 1 and out.startswith("osnet_x0_25_msmt17: ")
    rc, out, _ = run(capsys, "recommend", "accuracy", "--device", "cuda", "--task", "general", "--json")
    assert rc == 0 and json.loads(out)["family"] == "dinov2" and json.loads(out)["reason"]
    rc, _, err = run(capsys, "recommend", "balanced", "--device", "tpu")
    assert rc == 2 and err.count("\n") == 1 and "--device tpu" in err


def test_use_round_trip(capsys, isolated):
    # nothing chosen: the built-in default is untouched
    assert models.default_embedder() is None
    assert (run_config().embedder.name, run_config().embedder.model) == ("dino", DEFAULT_DINO_MODEL)

    rc, out, _ = run(capsys, "use", "osnet_x0_25_msmt17_onnx")
    assert rc == 0 and "osnet_x0_25_msmt17_onnx" in out and "not downloaded yet" in out
    assert json.loads(models.config_path().read_text()) == {"embed_model": "osnet_x0_25_msmt17_onnx"}
    assert models.default_embedder() == ("onnx", "osnet_x0_25_msmt17_onnx")
    rc, out, _ = run(capsys, "list", "--json")
    assert [m["name"] for m in json.loads(out)["models"] if m["default"]] == ["osnet_x0_25_msmt17_onnx"]
    rc, out, _ = run(capsys, "use")
    assert out.startswith("default: osnet_x0_25_msmt17_onnx")

    # runs without --embedder / --embed-model use it; either flag overrides it
    cfg = run_config()
    assert (cfg.embedder.name, cfg.embedder.model) == ("onnx", "osnet_x0_25_msmt17_onnx")
    assert (run_config("--embedder", "clip").embedder.name, run_config("--embedder", "clip").embedder.model) == (
        "clip",
        None,
    )
    cfg = run_config("--embed-model", "dinov2_vits14")
    assert (cfg.embedder.name, cfg.embedder.model) == ("dino", "dinov2_vits14")
    cfg = run_config("--dinov3", "facebook/dinov2-base")
    assert (cfg.embedder.name, cfg.embedder.model) == ("dino", "facebook/dinov2-base")

    rc, out, _ = run(capsys, "use", "--reset")
    assert rc == 0 and "reset" in out and not models.config_path().exists()
    assert run_config().embedder.name == "dino"
    rc, out, _ = run(capsys, "use", "--reset")
    assert rc == 0 and "no default" in out


def test_use_refuses_unknown_and_unrunnable_models(capsys):
    rc, _, err = run(capsys, "use", "osnet_x1_0")
    assert rc == 2 and err.count("\n") == 1 and "did you mean" in err
    rc, _, err = run(capsys, "use", "resnet50_msmt17")
    assert rc == 2 and err.count("\n") == 1 and "no embedder here runs it" in err
    assert not models.config_path().exists()


def test_a_broken_user_config_is_a_clear_error():
    models.config_path().parent.mkdir(parents=True)
    models.config_path().write_text("{not json")
    with pytest.raises(UserError, match="user config .*fix or delete"):
        run_config()
    models.config_path().write_text(json.dumps({"embed_model": "gone_model"}))
    with pytest.raises(UserError, match="user config .*gone_model"):
        run_config()


# ---- downloads from a local server ----------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        if self.path == "/ok":
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/cut":  # promises the whole file, sends a tenth, hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 10])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        elif self.path == "/page":
            body = b"<html>confirm download</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def leftovers():
    folder = models.cache_dir()
    return sorted(p.name for p in folder.iterdir() if p.name != "exports") if folder.is_dir() else []


def test_download_a_real_file_with_its_checksum(server):
    got = models.download("osnet_x0_25_msmt17", url=f"{server}/ok", sha256=PAYLOAD_SHA)
    assert got.downloaded and got.verified and got.sha256 == PAYLOAD_SHA
    assert Path(got.path) == models.cache_dir() / "osnet_x0_25_msmt17.pt"
    assert Path(got.path).read_bytes() == PAYLOAD and leftovers() == ["osnet_x0_25_msmt17.pt"]
    assert models.is_cached(models.get("osnet_x0_25_msmt17"))
    again = models.download("osnet_x0_25_msmt17", url=f"{server}/nothing-here")  # there: no request
    assert not again.downloaded and again.path == got.path


def test_download_checks_the_published_checksum(server, monkeypatch):
    published = dataclasses.replace(models.get("osnet_x0_5_msmt17"), sha256="0" * 64)
    monkeypatch.setattr(dl, "get", lambda name: published)
    with pytest.raises(UserError, match="sha256 mismatch.*refused") as err:
        models.download("osnet_x0_5_msmt17", url=f"{server}/ok")
    assert "\n" not in str(err.value) and leftovers() == []
    monkeypatch.setattr(dl, "get", lambda name: dataclasses.replace(published, sha256=PAYLOAD_SHA))
    assert models.download("osnet_x0_5_msmt17", url=f"{server}/ok").verified


def test_a_bad_checksum_is_refused_and_leaves_nothing(server, capsys):
    rc, _, err = run(capsys, "download", "osnet_x0_25_msmt17", "--url", f"{server}/ok", "--sha256", "f" * 64)
    assert rc == 2 and err.count("\n") == 1 and "sha256 mismatch" in err
    assert leftovers() == []


def test_an_interrupted_download_leaves_no_file_and_no_part(server):
    with pytest.raises(UserError, match="cannot download|cut off") as err:
        models.download("osnet_x0_25_msmt17", url=f"{server}/cut")
    assert f"{server}/cut" in str(err.value) and leftovers() == []
    good = models.download("osnet_x0_25_msmt17", url=f"{server}/ok")
    with pytest.raises(UserError):  # a failed forced download keeps the good file
        models.download("osnet_x0_25_msmt17", url=f"{server}/cut", force=True)
    assert Path(good.path).read_bytes() == PAYLOAD and leftovers() == ["osnet_x0_25_msmt17.pt"]


def test_a_web_page_instead_of_the_file_is_refused(server):
    with pytest.raises(UserError, match="web page"):
        models.download("osnet_x0_25_msmt17", url=f"{server}/page")
    with pytest.raises(UserError, match="HTTP 404"):
        models.download("osnet_x0_25_msmt17", url=f"{server}/missing")
    assert leftovers() == []


def test_unreachable_url_names_the_url_and_where_to_put_the_file(capsys):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/osnet.pt"
    rc, _, err = run(capsys, "download", "osnet_x0_25_msmt17", "--url", url)
    target = models.cache_dir() / "osnet_x0_25_msmt17.pt"
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert url in err and str(target) in err and "by hand" in err
    assert leftovers() == []


def test_cli_download_reports_the_file(server, capsys):
    rc, out, _ = run(capsys, "download", "osnet_x0_25_msmt17", "--url", f"{server}/ok")
    assert rc == 0 and "saved" in out and PAYLOAD_SHA in out and "no published checksum" in out
    rc, out, _ = run(capsys, "download", "osnet_x0_25_msmt17")
    assert rc == 0 and "already here" in out


def test_no_public_url_says_where_to_put_the_file():
    with pytest.raises(UserError, match=r"no public download.*osnet_x0_25_msmt17\.onnx"):
        models.download("osnet_x0_25_msmt17_onnx")


def test_hub_download_offline_is_one_line(monkeypatch):
    from mot_dinov3.features import hub

    monkeypatch.setattr(dl, "is_cached", lambda entry: False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(UserError, match="unreachable") as err:
        models.download("dinov2_vits14")
    assert "https://huggingface.co/facebook/dinov2-small" in str(err.value) and "\n" not in str(err.value)


def test_google_drive_links_skip_the_confirmation_page():
    url = models.get("osnet_x1_0_msmt17").url
    assert dl._direct(url) == url + "&export=download&confirm=t"
    assert dl._direct("http://127.0.0.1:8000/x.pt") == "http://127.0.0.1:8000/x.pt"


# ---- names in runs --------------------------------------------------------------------------------------


def test_resolve_paths_cached_names_and_hub_names(tmp_path):
    own = tmp_path / "my.onnx"
    own.write_bytes(b"x")
    assert models.resolve(str(own)) == str(own)
    assert models.resolve("facebook/dinov2-base") == "facebook/dinov2-base"  # a hub id: unchanged
    assert models.resolve("dinov2_vitb14") == "facebook/dinov2-base"
    with pytest.raises(UserError, match=r"not downloaded: expected .*osnet_x1_0_msmt17\.pt.*models download"):
        models.resolve("osnet_x1_0_msmt17")
    with pytest.raises(UserError, match="by hand"):
        models.resolve("osnet_x0_25_msmt17_onnx")  # no public URL
    with pytest.raises(UserError, match="did you mean"):
        models.resolve("osnet_x1_0_msmt")
    path = models.file_path(models.get("osnet_x1_0_msmt17"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    assert models.resolve("osnet_x1_0_msmt17") == str(path)


def test_resolve_config_checks_the_backend():
    cfg = models.resolve_config(EmbedderConfig(name="dino", model="dinov2_vits14_reg", pooling="mean"))
    assert (cfg.model, cfg.pooling) == ("facebook/dinov2-with-registers-small", "mean")
    assert (
        models.resolve_config(EmbedderConfig(name="clip", model="clip_vit_l14")).model
        == "openai/clip-vit-large-patch14"
    )
    with pytest.raises(UserError, match="embed_model='clip_vit_b32' runs with embedder='clip', not embedder='dino'"):
        models.resolve_config(EmbedderConfig(name="dino", model="clip_vit_b32"))
    with pytest.raises(UserError, match="no embedder here runs it"):
        models.resolve_config(EmbedderConfig(name="onnx", model="resnet50_msmt17"))
    plain = EmbedderConfig(name="dino", model=DEFAULT_DINO_MODEL)
    assert models.resolve_config(plain) is plain


def test_a_catalogue_name_of_another_backend_fails_in_the_api_and_reads_as_flags_in_the_cli():
    from mot_dinov3 import MultiObjectTracker
    from mot_dinov3.cli import flag_message

    with pytest.raises(UserError) as err:
        MultiObjectTracker(embedder="dino", embed_model="clip_vit_b32")
    assert flag_message(str(err.value), track_parser()).startswith(
        "--embed-model clip_vit_b32 runs with --embedder clip, not --embedder dino"
    )


def test_a_cached_catalogue_onnx_model_loads_through_the_factory(osnet_onnx, monkeypatch):
    from mot_dinov3.features.factory import create_embedder

    monkeypatch.setenv(cat.WEIGHTS_ENV, str(osnet_onnx.parent))  # the shared folder holds the exported file
    cfg = run_config("--embed-model", "osnet_x0_25_msmt17_onnx")
    assert cfg.embedder.name == "onnx"
    emb = create_embedder(cfg.embedder)
    image = np.full((240, 320, 3), 128, np.uint8)
    out = emb.embed(image, np.array([[10, 10, 60, 150]], np.float32))
    assert out.shape == (1, 512) and np.isclose(np.linalg.norm(out), 1.0, atol=1e-4)


def test_a_dinov2_hub_name_reaches_the_dino_loader():
    from mot_dinov3.features.dino import load_dino

    seen = []

    def loader(model_id, token):
        seen.append(model_id)
        raise OSError("stop here")

    cfg = models.resolve_config(run_config("--embed-model", "dinov2_vitg14").embedder)
    with pytest.raises(UserError):
        load_dino(cfg, token="", loader=loader)
    assert seen == ["facebook/dinov2-giant"]
