#!/usr/bin/env bash
# One idempotent set-up step for frcnn_plugin, used by `make demo` and `make test`.
#
#  1. creates the virtual environment (default: .venv in the repository root);
#  2. installs torch 2.13.0 + torchvision 0.28.0 unless a working pair is already there;
#  3. keeps an importable detectron2; else installs the one DETECTRON2_SOURCE names (a local
#     checkout, a local source archive such as detectron2-main.tar.gz, or a git URL), built with
#     its C++ ops, non-editable and without build isolation; else builds detectron2 v0.6 as a
#     pure-Python wheel from the sha256-pinned `pb1-detectron2` sdist (numpy<1.24, Pillow<10,
#     setuptools<81 in that route only);
#  4. installs this plugin in editable mode with its test and export extras (onnx,
#     onnxruntime; under the fallback's pins, so numpy stays < 1.24 there);
#  5. checks that torchvision.ops.nms runs and detectron2.modeling imports.
#
# Environment variables:
#   FRCNN_VENV          path of the virtual environment (default: <repo>/.venv)
#   FRCNN_PYTHON        interpreter used to create it (default: python3)
#   FRCNN_SYSTEM_SITE=1 create the venv with --system-site-packages, so that a torch and a
#                       detectron2 installed system-wide are seen and kept
#   DETECTRON2_SOURCE   a detectron2 checkout, source archive (.tar.gz/.tgz/.zip) or git URL
#                       to install when none is importable
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FRCNN_VENV:-$ROOT/.venv}"
PY_BOOT="${FRCNN_PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0,!=2.13.0+cpu"   # the local +cpu wheel breaks PyPI's torchvision
TORCHVISION_SPEC="torchvision==0.28.0"
D2_SDIST="pb1-detectron2==0.6"
D2_SDIST_SHA256="5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
FALLBACK_PINS=("numpy<1.24" "Pillow<10" "setuptools<81")
STAMP="$VENV/.frcnn_setup_stamp"

log() { echo "[setup] $*" >&2; }
die() { echo "[setup] ERROR: $*" >&2; exit 1; }

# A stamp of the inputs that decide what gets installed; equal stamp + passing checks = done.
stamp_value() {
  cat "$ROOT/setup.py" "$ROOT/tools/setup_env.sh" "$ROOT/tools/build_detectron2_fallback.py" \
    | sha256sum | cut -d' ' -f1
  echo "${DETECTRON2_SOURCE:-}"
}

final_check() {
  "$PY" - <<'PYEOF'
import sys
try:
    import torch, torchvision
    torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)
except Exception as e:  # noqa: B902
    sys.exit("torchvision.ops.nms does not run ({}: {}). torchvision from PyPI needs the CUDA "
             "build of torch (it runs on CPU too); the local '+cpu' wheel breaks it. Delete the "
             "venv and re-run the set-up.".format(type(e).__name__, e))
try:
    import detectron2.modeling  # noqa: F401
    import frcnn_plugin  # noqa: F401
except Exception as e:  # noqa: B902
    sys.exit("detectron2.modeling / frcnn_plugin do not import ({}: {}).".format(
        type(e).__name__, e))
try:
    from detectron2 import _C
    kind = "pure-Python fallback" if getattr(_C, "IS_FRCNN_PLACEHOLDER", False) else "C++ ops"
except ImportError:
    kind = "no C++ ops"
print("[setup] ok: torch {} torchvision {} detectron2 {} ({}) frcnn_plugin {}".format(
    torch.__version__, torchvision.__version__, detectron2.__version__, kind,
    frcnn_plugin.__version__), file=sys.stderr)
PYEOF
}

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  if [ "${FRCNN_SYSTEM_SITE:-0}" = "1" ]; then
    "$PY_BOOT" -m venv --system-site-packages "$VENV"
  else
    "$PY_BOOT" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] && final_check 2>/dev/null; then
  log "already set up ($VENV)"
  exit 0
fi

# --- torch + torchvision -----------------------------------------------------------------
if "$PY" -c "import torch, torchvision; torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5)" \
    >/dev/null 2>&1; then
  log "torch/torchvision already work: $("$PY" -c 'import torch, torchvision; print(torch.__version__, torchvision.__version__)')"
else
  log "installing $TORCH_SPEC $TORCHVISION_SPEC (CUDA build of torch; it runs on the CPU)"
  "${PIP[@]}" install "$TORCH_SPEC" "$TORCHVISION_SPEC"
fi

# --- detectron2 --------------------------------------------------------------------------
CONSTRAINTS=()
if "$PY" -c "import detectron2.modeling" >/dev/null 2>&1; then
  log "keeping the importable detectron2 at $("$PY" -c 'import detectron2, os; print(os.path.dirname(detectron2.__file__))')"
  if "$PY" -c "import detectron2._C as c, sys; sys.exit(0 if getattr(c, 'IS_FRCNN_PLACEHOLDER', False) else 1)" 2>/dev/null; then
    CONSTRAINTS=("${FALLBACK_PINS[@]}")   # our own fallback: keep its pins on re-runs
  fi
elif [ -n "${DETECTRON2_SOURCE:-}" ]; then
  src="$DETECTRON2_SOURCE"
  if [ -d "$src" ]; then
    log "installing detectron2 from the local checkout $src"
  elif [ -f "$src" ]; then
    case "$src" in
      *.tar.gz|*.tgz|*.zip) ;;
      *) die "DETECTRON2_SOURCE=$src is a file but not a source archive; allowed: a folder, a .tar.gz/.tgz/.zip archive or a git URL" ;;
    esac
    log "unpacking the detectron2 source archive $src"
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    case "$src" in
      *.zip) "$PY" -m zipfile -e "$src" "$tmp/src" ;;
      *) mkdir -p "$tmp/src" && tar -xzf "$src" -C "$tmp/src" ;;
    esac || die "cannot unpack DETECTRON2_SOURCE=$src (corrupt or not an archive)"
    setup_py="$(find "$tmp/src" -maxdepth 2 -name setup.py | head -n 1)"
    [ -n "$setup_py" ] || die "DETECTRON2_SOURCE=$src holds no setup.py at its top (not a detectron2 source archive)"
    src="$(dirname "$setup_py")"
  elif [ -e "$src" ] || [ "${src#/}" != "$src" ] || [ "${src#.}" != "$src" ]; then
    die "DETECTRON2_SOURCE=$src does not exist; allowed: a detectron2 folder, source archive or git URL"
  else
    case "$src" in git+*) ;; *) src="git+$src" ;; esac
    log "installing detectron2 from $src"
  fi
  # A source build compiles against the installed torch, hence no build isolation.
  # Non-editable: a recent setuptools breaks `pip install -e` of detectron2 without isolation.
  "${PIP[@]}" install setuptools wheel ninja
  MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}" \
    "${PIP[@]}" install --no-build-isolation "$src" \
    || die "could not install detectron2 from DETECTRON2_SOURCE=$DETECTRON2_SOURCE"
else
  log "no detectron2 found and DETECTRON2_SOURCE unset: building the v0.6 pure-Python fallback"
  CONSTRAINTS=("${FALLBACK_PINS[@]}")
  "${PIP[@]}" install "${CONSTRAINTS[@]}"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  # --no-build-isolation: pip prepares the sdist's metadata, and its setup.py imports torch.
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation "$D2_SDIST" -d "$tmp/sdist"
  "$PY" "$ROOT/tools/build_detectron2_fallback.py" "$tmp"/sdist/pb1-detectron2-0.6.tar.gz \
    --sha256 "$D2_SDIST_SHA256" --wheel-dir "$tmp/wheel"
  "${PIP[@]}" install "$tmp"/wheel/detectron2-0.6-*.whl "${CONSTRAINTS[@]}"
fi

# --- the plugin --------------------------------------------------------------------------
log "installing frcnn_plugin (editable, with test and export extras)"
"${PIP[@]}" install -e "$ROOT[test,export]" "${CONSTRAINTS[@]}"
# tools/test_robustness.py: imagecorruptions without its own requirements, which name
# opencv-python next to the opencv-python-headless installed above (two cv2 in one venv); its
# other needs (scikit-image, scipy, Pillow, numpy) are in setup.py
"${PIP[@]}" install --no-deps "imagecorruptions==1.1.2"

final_check || die "set-up finished but the final check failed (see above)"
stamp_value > "$STAMP"
log "done ($VENV)"
