"""The models one API serves: the base model and each deployed author's twin, loaded on demand.

A request leases the model of its author (`lease`); the lease keeps that model loaded while the
request generates. At most `max_loaded` models stay loaded: the least recently used idle one is
closed first. `reload(author)` swaps in a new deployment without a restart: the new model loads
beside the old one and must answer a smoke query, then new requests get it while the old one
finishes its requests (drain) and is closed.

Where models run: in this process (a deployment's quantized GGUF on CPU, its merged folder on a
GPU), or behind an OpenAI-compatible server (`TWIN_SERVE_API_BASE`: vLLM with --enable-lora, SGLang,
llama-server, Ollama), where each author's model is the server's model named `twin-<author>`. With
`TWIN_SERVE_BACKEND=vllm` a deployment loads its LoRA adapter into vLLM first, as
`twin-<author>-v<N>`, and a replaced version's adapter is unloaded after its drain (`serving.vllm`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from twin_platform.llm.chat import ChatModel
from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.local import BUNDLED_GGUF, AdapterModel, LocalChatModel
from twin_platform.llm.options import DEFAULT_MODEL, LOCAL_PROVIDER, LLMOptions
from twin_platform.llm.smoke_check import check_gguf
from twin_platform.serving.adapters import adapter_base_model
from twin_platform.serving.deployments import Deployment, DeploymentStore
from twin_platform.serving.vllm import VLLMAdapters, VLLMError, adapter_name
from twin_platform.settings import Settings

log = logging.getLogger(__name__)
BASE = "base"  # the model id of the untuned base model
SMOKE = [{"role": "user", "content": "Say hello in five words."}]


class UnknownModel(LookupError):
    """A model id or author that nothing is deployed for."""


@dataclass(frozen=True)
class Entry:
    """One model the API lists: `id` is what OpenAI clients send as `model`."""

    id: str
    author: str | None
    version: str


@dataclass
class _Loaded:
    model: ChatModel
    version: str
    adapter: str | None = None  # its LoRA adapter's name on vLLM (TWIN_SERVE_BACKEND=vllm)
    leases: int = 0
    last_used: float = field(default_factory=time.monotonic)
    drained: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class Lease:
    """A loaded model held for one request; `author` None means the base model answers."""

    model: ChatModel
    version: str
    author: str | None
    _held: _Loaded = field(repr=False, compare=False)


@dataclass(frozen=True)
class ReloadReport:
    author: str
    version: str
    previous: str | None
    load_s: float
    smoke_s: float


def served_model_string(value: str, api_base: str | None) -> str:
    """`TWIN_SERVE_MODEL` as a model string. With an api base, or named by a litellm provider
    (`openai/...`), it is litellm's; a local path or Hugging Face id runs in process (an HF id whose
    organisation is also a provider, `openai/gpt-oss-20b`, is written `twin-local/openai/gpt-oss-20b`)."""
    if value.startswith(f"{LOCAL_PROVIDER}/") or api_base:
        return value
    if not Path(value).exists():
        from twin_platform.llm.litellm_model import is_provider_model

        if is_provider_model(value):
            return value
    return f"{LOCAL_PROVIDER}/{value}"


def _same_model(a: str | None, b: str | None) -> bool:
    """Whether two model ids or paths name the same model (paths compared resolved)."""
    if not a or not b:
        return False
    return a == b or (Path(a).exists() and Path(a).resolve() == Path(b).resolve())


def _on_gpu() -> bool:
    """A GPU is there to serve on (checked without importing torch, which the API may not need)."""
    return Path("/dev/nvidiactl").exists()


class ServedModels:
    def __init__(self, settings: Settings, store: DeploymentStore, max_loaded: int) -> None:
        self.settings = settings
        self.store = store
        self.max_loaded = max(1, max_loaded)
        self._loaded: dict[str, _Loaded] = {}  # author (or BASE) -> its loaded model
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}
        self._refused: dict[str, str] = {}  # author -> a deployment label that failed to load
        self.vllm = VLLMAdapters.from_settings(settings)

    # What is served -------------------------------------------------------------------------------

    def base_options(self) -> LLMOptions:
        s = self.settings
        model = (
            served_model_string(s.serve_model, s.serve_api_base) if s.serve_model else DEFAULT_MODEL
        )
        options = LLMOptions.from_settings(s, model)
        key = s.serve_api_key.get_secret_value() if s.serve_api_key else None
        if s.serve_api_base:
            return replace(options, api_base=s.serve_api_base, api_key=key)
        return replace(
            options, adapters=s.serve_adapters, max_adapter_rank=s.serve_max_adapter_rank
        )

    def base_version(self) -> str:
        return f"base:{self.settings.serve_model or BUNDLED_GGUF}"

    def options(self, deployment: Deployment) -> LLMOptions:
        """Where a deployment runs: vLLM's adapter of that version, the remote server's
        `twin-<author>`, a GPU's merged folder, or the quantized GGUF on CPU."""
        base = self.base_options()
        if self.vllm is not None:
            name = adapter_name(deployment.model, deployment.version)
            return replace(base, model=f"openai/{name}")
        if self.settings.serve_api_base:
            return replace(base, model=f"openai/{deployment.model}")
        local = deployment.hf_path if _on_gpu() or not deployment.gguf else deployment.gguf
        return replace(base, model=f"{LOCAL_PROVIDER}/{local}")

    def catalog(self) -> list[Entry]:
        """The base model, then one model per deployed author."""
        entries = [Entry(BASE, None, self.base_version())]
        return entries + [
            Entry(d.model, d.author, d.label) for d in self.store.all() if d is not None
        ]

    def author_of(self, model_id: str) -> str | None:
        """The author an OpenAI `model` id names (None: the base model). `twin` names the default
        author's twin (TWIN_RAG_DEFAULT_AUTHOR), or the base model without one."""
        if model_id == BASE:
            return None
        if model_id == self.settings.serve_model_name:
            return self.settings.rag_default_author
        for entry in self.catalog():
            if entry.id == model_id:
                return entry.author
        raise UnknownModel(f"model {model_id!r} not found; GET /v1/models lists the served models")

    def is_loaded(self, author: str | None = None) -> bool:
        return (author or BASE) in self._loaded

    # Leasing and loading ---------------------------------------------------------------------------

    @contextmanager
    def lease(self, author: str | None) -> Iterator[Lease]:
        """`acquire` for the length of a block."""
        lease = self.acquire(author)
        try:
            yield lease
        finally:
            self.release(lease)

    def acquire(self, author: str | None) -> Lease:
        """The author's deployed model (the base model when nothing is deployed for them), kept
        loaded until `release`."""
        key, loaded = self._acquire(author)
        return Lease(loaded.model, loaded.version, author if key != BASE else None, loaded)

    def release(self, lease: Lease) -> None:
        self._release(lease._held)

    def _acquire(self, author: str | None) -> tuple[str, _Loaded]:
        deployment = self.store.get(author) if author else None
        key = author if deployment is not None else BASE
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                loaded.leases += 1
                loaded.last_used = time.monotonic()
                return key, loaded
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:  # one load per model; other requests for it wait for that one
            with self._lock:
                loaded = self._loaded.get(key)
            if loaded is None:
                loaded = self._open(deployment)
                with self._lock:
                    self._loaded[key] = loaded
                    self._evict(keep=key)
            with self._lock:
                loaded.leases += 1
                loaded.last_used = time.monotonic()
        return key, loaded

    def _open(self, deployment: Deployment | None) -> _Loaded:
        if deployment is None:
            return _Loaded(open_chat_model(self.base_options(), shared=False), self.base_version())
        options = self.options(deployment)
        if self.vllm is not None:
            name = self._load_adapter(self.vllm, deployment)
            return _Loaded(open_chat_model(options, shared=False), deployment.label, name)
        base = self._adapter_base(deployment)
        if base is not None:
            base.load_adapter(deployment.label, deployment.adapter)  # type: ignore[arg-type]
            return _Loaded(base.with_adapter(deployment.label), deployment.label)
        local = options.model.removeprefix(f"{LOCAL_PROVIDER}/")
        if local.endswith(".gguf"):  # llama.cpp aborts the process on some bad files: try it aside
            problem = check_gguf(local, threads=options.threads)
            if problem:
                raise RuntimeError(f"{deployment.label} cannot be served: {problem}")
        model = open_chat_model(options, shared=False)
        return _Loaded(model, deployment.label)

    def _adapter_base(self, deployment: Deployment) -> LocalChatModel | None:
        """The in-process base model, when it can serve this deployment as a LoRA adapter: a batched
        runtime with an adapter bank (TWIN_SERVE_ADAPTERS), and an adapter trained on that very base
        (TWIN_SERVE_MODEL); otherwise None, and the merged folder is loaded instead."""
        if (
            not deployment.adapter
            or not self.settings.serve_adapters
            or self.settings.serve_api_base
        ):
            return None
        if not _same_model(adapter_base_model(deployment.adapter), self.settings.serve_model):
            return None
        _, loaded = self._acquire(None)
        self._release(loaded)  # kept loaded while adapters use it (`_evict`)
        base = loaded.model
        if isinstance(base, LocalChatModel) and base.serves_adapters:
            return base
        return None

    @staticmethod
    def _load_adapter(vllm: VLLMAdapters, deployment: Deployment) -> str:
        """Load the deployment's adapter into vLLM (unless it is there); returns its name there."""
        if deployment.adapter is None:
            raise RuntimeError(
                f"{deployment.label} cannot be served by vLLM: its record names no LoRA adapter"
                " (a full fine-tune, or recorded before vLLM serving: materialize"
                " deployed_endpoint again)"
            )
        name = adapter_name(deployment.model, deployment.version)
        vllm.ensure(name, deployment.adapter)
        return name

    def _unload(self, author: str, name: str | None) -> None:
        """Unload a replaced or refused version's adapter from vLLM, unless the author's serving
        model uses it. A failure is logged: it leaves an idle adapter loaded, nothing worse."""
        with self._lock:
            serving = self._loaded.get(author)
        if self.vllm is None or name is None or (serving and serving.adapter == name):
            return
        try:
            self.vllm.unload(name)
        except VLLMError as exc:
            log.warning("%s: %s stays loaded on vLLM: %s", author, name, exc)

    def _release(self, loaded: _Loaded) -> None:
        with self._lock:
            loaded.leases -= 1
            if loaded.leases == 0:
                loaded.drained.set()

    def _evict(self, keep: str) -> None:
        """Close the least recently used idle models beyond `max_loaded` (call under the lock)."""
        pinned = {keep}
        if any(isinstance(m.model, AdapterModel) for m in self._loaded.values()):
            pinned.add(BASE)  # the adapters' base model
        idle = sorted(
            (k for k, m in self._loaded.items() if k not in pinned and m.leases == 0),
            key=lambda k: self._loaded[k].last_used,
        )
        while len(self._loaded) > self.max_loaded and idle:
            key = idle.pop(0)
            log.info(
                "unloading %s (%s) to stay within %d models",
                key,
                self._loaded[key].version,
                self.max_loaded,
            )
            self._loaded.pop(key).model.close()

    def reload(self, author: str, drain_s: float = 60.0) -> ReloadReport:
        """Load the author's current deployment beside the serving one, smoke-test it, switch, then
        close the old one once its requests finish. A model that fails to load or to answer is
        never switched in (the error propagates; the old model keeps serving)."""
        deployment = self.store.get(author)
        if deployment is None:
            raise UnknownModel(f"nothing is deployed for {author!r}")
        started = time.perf_counter()
        fresh = self._open(deployment)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        try:
            answer = fresh.model.chat(SMOKE, max_tokens=8, temperature=0.0)
            if not answer.text.strip():
                raise RuntimeError("the new model answered the smoke query with nothing")
        except Exception:
            fresh.model.close()
            self._unload(author, fresh.adapter)
            raise
        smoke_s = time.perf_counter() - started
        with self._lock:
            old = self._loaded.get(author)
            self._loaded[author] = fresh
            self._evict(keep=author)
        if old is not None:
            self._retire(old, drain_s, author)
        elif deployment.previous:  # not loaded here, but maybe on vLLM (loaded before a restart)
            previous = deployment.previous
            self._unload(author, adapter_name(previous["model"], previous["version"]))
        return ReloadReport(author, fresh.version, old.version if old else None, load_s, smoke_s)

    def refresh(self) -> list[ReloadReport]:
        """Switch every loaded author whose deployment record changed since it was loaded (a
        deployment or rollback by a process without an API key). A record that fails to load is
        logged once and not retried; the old model keeps serving. On vLLM, adapters it lost in a
        restart are loaded again."""
        if self.vllm is not None:
            self._reload_lost_adapters(self.vllm)
        with self._lock:
            loaded = {a: m.version for a, m in self._loaded.items() if a != BASE}
        reports = []
        for author, version in loaded.items():
            current = self.store.get(author)
            if current is None or current.label in (version, self._refused.get(author)):
                continue
            try:
                reports.append(self.reload(author))
                log.info("%s: now serving %s (deployment record changed)", author, current.label)
            except Exception as exc:
                self._refused[author] = current.label
                log.error(
                    "%s: %s failed to load, still serving %s: %s",
                    author,
                    current.label,
                    version,
                    exc,
                )
        return reports

    def _reload_lost_adapters(self, vllm: VLLMAdapters) -> None:
        """Load again the adapters of the models loaded here that vLLM no longer has (it keeps
        runtime-loaded adapters in memory only, so a restart forgets them)."""
        with self._lock:
            wanted = {a: (m.adapter, m.version) for a, m in self._loaded.items() if m.adapter}
        try:
            present = vllm.loaded() if wanted else {}
        except VLLMError as exc:
            log.warning("vLLM's adapters not checked: %s", exc)
            return
        for author, (name, version) in wanted.items():
            current = self.store.get(author)
            if name in present or current is None or current.label != version:
                continue  # present, or the record changed: `refresh` switches to the new one
            try:
                self._load_adapter(vllm, current)
                log.info("%s: %s loaded again on vLLM (it had lost it)", author, name)
            except Exception as exc:
                log.error("%s: %s could not be loaded again on vLLM: %s", author, name, exc)

    def _retire(self, old: _Loaded, drain_s: float, author: str) -> None:
        """Close a replaced model once its last request ends (in the background, bounded), then
        unload its adapter from vLLM."""

        def close() -> None:
            with self._lock:
                idle = old.leases == 0
            if not idle and not old.drained.wait(drain_s):
                log.warning("model %s still busy after %.0f s: closing it", old.version, drain_s)
            old.model.close()
            self._unload(author, old.adapter)

        threading.Thread(target=close, name="retire-model", daemon=True).start()

    def close(self) -> None:
        with self._lock:
            loaded, self._loaded = list(self._loaded.values()), {}
        for item in loaded:
            item.model.close()
