"""A vLLM server's runtime LoRA API: each deployed version's adapter, loaded under its own name.

vLLM started with `--enable-lora` and `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True` loads an adapter on
`POST /v1/load_lora_adapter {"lora_name", "lora_path"}`, forgets one on `POST
/v1/unload_lora_adapter {"lora_name"}`, and lists the loaded ones in `GET /v1/models` (an entry
with a `parent`; `root` is its path).

Each version is loaded as `twin-<author>-v<N>`, a name never reused for other weights: the new
version loads beside the serving one and is smoke-tested, and the old one is unloaded once its
requests finish, as with models in process. Reloading new weights under one name is what vLLM
gets wrong: its prefix cache is keyed by the name, so new requests could reuse the old adapter's
cached blocks (vLLM issues 30931, 42125), and `load_inplace` re-reads the adapter on every step in
some releases (PRs 36373, 41482).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx

from twin_platform.settings import Settings

log = logging.getLogger(__name__)


class VLLMError(RuntimeError):
    """vLLM refused a request or could not be reached; what it served before is unchanged."""


def adapter_name(model: str, version: int) -> str:
    """The name a deployment's adapter has on vLLM: what the API sends as `model` there."""
    return f"{model}-v{version}"


def _reason(response: httpx.Response) -> str:
    """vLLM's error message: `{"error": {"message"}}` (newer), `{"message"}` (older) or text."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.text[:300]
    if body == {"detail": "Not Found"}:  # FastAPI's: the route itself is missing
        return (
            "no runtime LoRA API: start vLLM with --enable-lora and"
            " VLLM_ALLOW_RUNTIME_LORA_UPDATING=True"
        )
    error = body.get("error", body) if isinstance(body, dict) else body
    message = error.get("message", error) if isinstance(error, dict) else error
    return str(message)[:300]


class VLLMAdapters:
    """The LoRA adapters of one vLLM server. The key goes in a header only, never in a message."""

    def __init__(self, api_base: str, api_key: str | None, timeout_s: float = 120.0) -> None:
        base = api_base.rstrip("/")
        self.base = base if base.endswith("/v1") else f"{base}/v1"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Loading reads the adapter from disk into the engine: seconds for a large one.
        self._timeout = httpx.Timeout(timeout_s, connect=10.0)

    @classmethod
    def from_settings(cls, settings: Settings) -> VLLMAdapters | None:
        """The server of TWIN_SERVE_API_BASE when TWIN_SERVE_BACKEND=vllm, else None."""
        if settings.serve_backend != "vllm":
            return None
        if not settings.serve_api_base:
            raise ValueError(
                "TWIN_SERVE_BACKEND=vllm needs TWIN_SERVE_API_BASE (e.g. http://vllm:8000/v1)"
            )
        key = settings.serve_api_key.get_secret_value() if settings.serve_api_key else None
        return cls(settings.serve_api_base, key)

    def loaded(self) -> dict[str, str]:
        """The adapters vLLM serves now: name -> path."""
        models = self._call("GET", "/models").json().get("data", [])
        return {m["id"]: str(m.get("root") or "") for m in models if m.get("parent")}

    def ensure(self, name: str, path: str) -> None:
        """Serve the adapter at `path` as `name`: loaded unless vLLM has it already (an API that
        restarted, a rollback to a version still loaded). Raises VLLMError when vLLM refuses it."""
        current = self.loaded().get(name)
        if current == path:
            return
        if current is not None:  # the same version from another path: its weights are the same
            self.unload(name)
        self._call("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": path})
        log.info("vLLM at %s: loaded %s from %s", self.base, name, path)

    def unload(self, name: str) -> bool:
        """Forget an adapter; False when vLLM has none of that name."""
        try:
            self._call("POST", "/unload_lora_adapter", {"lora_name": name})
        except VLLMError as exc:
            if "(404)" in str(exc):
                return False
            raise
        log.info("vLLM at %s: unloaded %s", self.base, name)
        return True

    def _call(self, method: str, path: str, body: dict[str, str] | None = None) -> httpx.Response:
        try:
            response = httpx.request(
                method, self.base + path, json=body, headers=self._headers, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise VLLMError(f"vLLM at {self.base} cannot be reached: {exc!r}") from exc
        if response.status_code != 200:
            raise VLLMError(
                f"vLLM at {self.base} refused {method} {path} ({response.status_code}):"
                f" {_reason(response)}"
            )
        return response
