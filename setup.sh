#!/usr/bin/env bash
# Create .venv and install mot-dinov3 with the right PyTorch build.
#   bash setup.sh cpu|t4_gpu [--dinov3-edge|--dinov3-stable] [--yes]
# Environment: PYTHON (interpreter, default python3), TORCH_CHANNEL (t4_gpu: cu121, cu124, cu126 ...; default
# cu124), TORCH_INDEX_URL (cpu: wheel index to try first), TORCH_VERSION / TORCHVISION_VERSION (cpu fallback pins).
# Safe to re-run: an existing .venv is reused and a working torch is kept.
set -euo pipefail
cd "$(dirname "$0")"

die() { echo "setup.sh: $*" >&2; exit 1; }
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

variant="" ; transformers_mode="" ; yes=0
for arg in "$@"; do
  case "$arg" in
    cpu|t4_gpu) variant=$arg ;;
    --dinov3-edge) transformers_mode=edge ;;
    --dinov3-stable) transformers_mode=stable ;;
    --yes|-y) yes=1 ;;
    -h|--help) usage 0 ;;
    *) echo "setup.sh: unknown argument '$arg'" >&2; usage 2 ;;
  esac
done
[ -n "$variant" ] || { echo "setup.sh: choose a variant: cpu or t4_gpu" >&2; usage 2; }

PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found; install Python >= 3.10 or set PYTHON=/path/to/python3"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || die "Python >= 3.10 needed ($("$PYTHON" -V))"

if [ "$yes" -ne 1 ]; then
  if [ -t 0 ]; then
    read -r -p "Create/update .venv and install mot-dinov3 ($variant)? [y/N] " ans
    case "$ans" in y|Y|yes) ;; *) echo "aborted"; exit 1 ;; esac
  else
    die "no terminal to confirm on; re-run with --yes"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv || die "could not create .venv (on Debian/Ubuntu: apt install python3-venv)"
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip || die "pip upgrade failed; check your network or pip configuration"

torch_ok() { $VPY -c 'import torch, torchvision; from torchvision.ops import nms; nms(torch.zeros(1, 4), torch.ones(1), 0.5)' 2>/dev/null; }
index_reachable() { $VPY -c "import urllib.request as u; u.urlopen('$1', timeout=5)" >/dev/null 2>&1; }

if [ "$variant" = cpu ]; then
  if torch_ok; then
    echo "==> torch $($VPY -c 'import torch; print(torch.__version__)') already works; keeping it"
  else
    url=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
    if index_reachable "$url/torch/"; then
      echo "==> installing CPU torch + torchvision from $url"
      $VPY -m pip install --upgrade torch torchvision --index-url "$url" || die "torch install from $url failed"
    else
      # PyPI's default torch/torchvision pair runs on CPU; a CPU-only torch wheel mixed with PyPI torchvision
      # fails to load torchvision's C ops, so both come from the same place, pinned together.
      tv=${TORCH_VERSION:-2.14.1}; tvv=${TORCHVISION_VERSION:-0.29.1}
      echo "==> $url unreachable; installing torch==$tv torchvision==$tvv from PyPI (runs on CPU)"
      $VPY -m pip install "torch==$tv" "torchvision==$tvv" || die "torch install failed; set TORCH_VERSION/TORCHVISION_VERSION to a matching pair"
    fi
  fi
else
  channel=${TORCH_CHANNEL:-cu124}
  url="https://download.pytorch.org/whl/$channel"
  echo "==> installing CUDA torch + torchvision ($channel) from $url"
  $VPY -m pip install --upgrade torch torchvision --index-url "$url" \
    || die "torch install for TORCH_CHANNEL=$channel failed; pick the channel your driver supports (cu121, cu124, cu126 ...)"
fi
torch_ok || die "torch/torchvision installed but torchvision's ops do not load; reinstall a matching pair (see README, Troubleshooting)"

echo "==> installing mot-dinov3 and its dependencies"
$VPY -m pip install -q -e ".[test,bench]" || die "package install failed; see the pip output above"

case "$transformers_mode" in
  edge) echo "==> installing transformers from GitHub (DINOv3 support)"
        $VPY -m pip install -q --upgrade "git+https://github.com/huggingface/transformers.git" \
          || die "could not install transformers from GitHub; try --dinov3-stable" ;;
  stable) echo "==> upgrading transformers from PyPI"
          $VPY -m pip install -q --upgrade "transformers>=4.56" || die "transformers upgrade failed" ;;
esac

$VPY - <<'PY' || die "installed, but the import check failed; see the error above"
import torch, transformers, ultralytics, mot_dinov3
print(f"==> ready: mot-dinov3 {mot_dinov3.__version__}, torch {torch.__version__} "
      f"(CUDA {'yes' if torch.cuda.is_available() else 'no'}), transformers {transformers.__version__}, "
      f"ultralytics {ultralytics.__version__}, DINOv3 {'supported' if hasattr(transformers, 'DINOv3ViTModel') else 'not supported (use --dinov3-edge)'}")
PY
echo "Activate with: source .venv/bin/activate   then: mot-dinov3 --help"
