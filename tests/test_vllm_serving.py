"""Serving through vLLM (TWIN_SERVE_BACKEND=vllm): each deployment's LoRA adapter loaded over vLLM's
runtime LoRA API, and the adapter a DPO twin needs on the base model.

vLLM needs a GPU, so the server here is a stand-in on a free port that answers the routes the way
vLLM's documentation and code do: `POST /v1/load_lora_adapter` and `/v1/unload_lora_adapter`
(`{"lora_name", "lora_path"}`; 400 for a name already loaded, 404 for a path with no adapter or an
unknown name, errors as `{"error": {"message"}}`), `GET /v1/models` (an adapter has a `parent` and
its path as `root`), `/v1/chat/completions` for loaded names only, all behind its Bearer key.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from twin_platform.serving.deployments import Deployment, DeploymentStore
from twin_platform.serving.models import ServedModels
from twin_platform.serving.vllm import VLLMError
from twin_platform.settings import load_settings

KEY = "vllm-key-0123456789abcdef"
AUTHOR = "ada-quill"
BASE = "twin-base"


@dataclass
class FakeVLLM:
    """What the stand-in holds: the loaded adapters (name -> path) and every request it got."""

    url: str = ""
    adapters: dict[str, str] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [r["body"] for r in self.requests if r["path"] == path]


def _handler(state: FakeVLLM) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str) -> None:
            self._reply(status, {"error": {"message": message, "type": kind, "code": status}})

        def _handle(self, body: dict[str, Any]) -> None:
            auth = self.headers.get("Authorization")
            state.requests.append({"path": self.path, "body": body, "auth": auth})
            if auth != f"Bearer {KEY}":
                return self._reply(401, {"error": "Unauthorized"})
            route = getattr(self, "_" + self.path.strip("/").replace("/", "_"), None)
            if route is None:
                return self._reply(404, {"detail": "Not Found"})
            route(body)

        def do_GET(self) -> None:
            self._handle({})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self._handle(json.loads(self.rfile.read(length) or b"{}"))

        def _v1_models(self, body: dict[str, Any]) -> None:
            cards = [{"id": BASE, "object": "model", "root": "/models/base", "parent": None}]
            cards += [
                {"id": name, "object": "model", "root": path, "parent": BASE}
                for name, path in state.adapters.items()
            ]
            self._reply(200, {"object": "list", "data": cards})

        def _v1_load_lora_adapter(self, body: dict[str, Any]) -> None:
            name, path = body["lora_name"], body["lora_path"]
            if name in state.adapters:
                return self._error(
                    400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput"
                )
            if not (Path(path) / "adapter_config.json").is_file():
                return self._error(404, f"No adapter found for {path}", "NotFoundError")
            state.adapters[name] = path
            self._reply(200, f"Success: LoRA adapter '{name}' added successfully.")

        def _v1_unload_lora_adapter(self, body: dict[str, Any]) -> None:
            name = body["lora_name"]
            if state.adapters.pop(name, None) is None:
                return self._error(404, f"The lora adapter '{name}' cannot be found.", "NotFound")
            self._reply(200, f"Success: LoRA adapter '{name}' removed successfully.")

        def _v1_chat_completions(self, body: dict[str, Any]) -> None:
            model = body["model"]
            if model != BASE and model not in state.adapters:
                return self._error(404, f"The model `{model}` does not exist.", "NotFoundError")
            message = {"role": "assistant", "content": f"hello from {model}"}
            self._reply(
                200,
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                },
            )

    return Handler


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    state = FakeVLLM()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def adapters(tmp_path: Path) -> dict[int, Path]:
    """Adapter folders of versions 1 and 2 (what vLLM reads), and version 3's, which has none."""
    folders = {}
    for version in (1, 2, 3):
        folder = tmp_path / f"twin-{AUTHOR}" / "versions" / str(version) / "adapter"
        folder.mkdir(parents=True)
        if version < 3:
            (folder / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
        folders[version] = folder
    return folders


@pytest.fixture
def store(tmp_path: Path) -> DeploymentStore:
    return DeploymentStore(tmp_path / "deployments")


@pytest.fixture
def models(vllm: FakeVLLM, store: DeploymentStore) -> Iterator[ServedModels]:
    settings = load_settings(
        serve_backend="vllm",
        serve_api_base=f"{vllm.url}/v1",
        serve_api_key=KEY,
        serve_model=f"openai/{BASE}",
        llm_max_retries=0,
    )
    served = ServedModels(settings, store, max_loaded=2)
    yield served
    served.close()


def deployment(version: int, adapters: dict[int, Path]) -> Deployment:
    folder = adapters[version]
    return Deployment(AUTHOR, f"twin-{AUTHOR}", version, None, str(folder.parent), str(folder))


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_deployment_loads_its_adapter_and_unloads_the_one_it_replaced(
    vllm: FakeVLLM, store: DeploymentStore, models: ServedModels, adapters: dict[int, Path]
) -> None:
    store.record(deployment(1, adapters))
    report = models.reload(AUTHOR)
    assert report.version == f"twin-{AUTHOR}:1" and report.previous is None
    assert vllm.adapters == {f"twin-{AUTHOR}-v1": str(adapters[1])}
    load = next(r for r in vllm.requests if r["path"] == "/v1/load_lora_adapter")
    assert load["body"] == {"lora_name": f"twin-{AUTHOR}-v1", "lora_path": str(adapters[1])}
    assert load["auth"] == f"Bearer {KEY}"
    assert vllm.bodies("/v1/chat/completions")[-1]["model"] == f"twin-{AUTHOR}-v1"  # the smoke
    with models.lease(AUTHOR) as lease:
        answer = lease.model.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert answer.text == f"hello from twin-{AUTHOR}-v1"

    store.record(deployment(2, adapters))
    assert models.reload(AUTHOR).previous == f"twin-{AUTHOR}:1"
    wait_for(lambda: f"twin-{AUTHOR}-v1" not in vllm.adapters, "v1 was not unloaded")
    assert vllm.adapters == {f"twin-{AUTHOR}-v2": str(adapters[2])}
    assert vllm.bodies("/v1/unload_lora_adapter") == [{"lora_name": f"twin-{AUTHOR}-v1"}]

    store.rollback(AUTHOR)  # `twin deploy rollback`: version 1 again, then the API reloads
    models.reload(AUTHOR)
    wait_for(lambda: f"twin-{AUTHOR}-v2" not in vllm.adapters, "v2 was not unloaded")
    assert vllm.adapters == {f"twin-{AUTHOR}-v1": str(adapters[1])}
    with models.lease(AUTHOR) as lease:
        assert lease.version == f"twin-{AUTHOR}:1"


def test_a_failing_load_leaves_the_serving_deployment_in_place(
    vllm: FakeVLLM,
    store: DeploymentStore,
    models: ServedModels,
    adapters: dict[int, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    store.record(deployment(1, adapters))
    models.reload(AUTHOR)
    store.record(deployment(3, adapters))  # a folder with no adapter: vLLM refuses it
    with pytest.raises(VLLMError, match="No adapter found") as refused:
        models.reload(AUTHOR)
    assert KEY not in str(refused.value)
    assert models.refresh() == []  # the compose path (the API polls the records): refused too
    assert vllm.adapters == {f"twin-{AUTHOR}-v1": str(adapters[1])}
    assert vllm.bodies("/v1/unload_lora_adapter") == []
    with models.lease(AUTHOR) as lease:
        assert lease.version == f"twin-{AUTHOR}:1"
        assert lease.model.chat([{"role": "user", "content": "hi"}], max_tokens=4).text
    assert "failed to load" in caplog.text and KEY not in caplog.text


def test_a_refused_deployment_is_written_back_by_the_deploy_path(
    vllm: FakeVLLM, store: DeploymentStore, models: ServedModels, adapters: dict[int, Path]
) -> None:
    """`deployed_endpoint`'s path: the record, then the API's real `/admin` reload route, which
    answers 503 when vLLM refuses the adapter; the previous record is written back."""
    import uvicorn
    from fastapi import FastAPI

    from twin_platform.api.routers import admin
    from twin_platform.api.security import KeyStore, RateLimiter
    from twin_platform.serving.endpoint import DeployError, deploy

    app = FastAPI()
    app.include_router(admin.router)
    app.state.serving = SimpleNamespace(models=models, keys=KeyStore([]), limiter=RateLimiter(600))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the API did not start")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        store.record(deployment(1, adapters))
        models.reload(AUTHOR)
        before = store.get(AUTHOR)
        with pytest.raises(DeployError, match=r"not switched in.*No adapter found"):
            deploy(store, deployment(3, adapters), f"http://127.0.0.1:{port}", None)
        assert store.get(AUTHOR) == before
        assert vllm.adapters == {f"twin-{AUTHOR}-v1": str(adapters[1])}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_adapters_a_restarted_vllm_lost_are_loaded_again(
    vllm: FakeVLLM, store: DeploymentStore, models: ServedModels, adapters: dict[int, Path]
) -> None:
    store.record(deployment(1, adapters))
    models.reload(AUTHOR)
    vllm.adapters.clear()  # vLLM keeps runtime-loaded adapters in memory only
    models.refresh()
    assert vllm.adapters == {f"twin-{AUTHOR}-v1": str(adapters[1])}


def test_a_record_without_an_adapter_is_refused_with_the_reason(
    vllm: FakeVLLM, store: DeploymentStore, models: ServedModels, adapters: dict[int, Path]
) -> None:
    full = Deployment(AUTHOR, f"twin-{AUTHOR}", 4, None, str(adapters[1].parent))
    store.record(full)
    with pytest.raises(RuntimeError, match="names no LoRA adapter"):
        models.reload(AUTHOR)
    assert vllm.bodies("/v1/load_lora_adapter") == []


def test_vllm_without_the_runtime_lora_api_is_named(tmp_path: Path, vllm: FakeVLLM) -> None:
    from twin_platform.serving.vllm import VLLMAdapters

    server = VLLMAdapters(vllm.url, KEY)  # a base without /v1 gets it
    with pytest.raises(VLLMError, match="VLLM_ALLOW_RUNTIME_LORA_UPDATING"):
        server._call("POST", "/no_such_route", {})
    with pytest.raises(VLLMError, match=r"\(401\)"):
        VLLMAdapters(f"{vllm.url}/v1/", "wrong").loaded()
    assert server.unload("never-loaded") is False


# The adapter a vLLM server loads for a registered version --------------------------------------


def _train_stage(start: Path, folder: Path, rank: int, alpha: int, rslora: bool) -> Any:
    """What `training.runner.save` leaves for one LoRA stage on the model at `start`: its merged
    weights with the adapter in `adapter/` (random LoRA weights stand in for training)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from twin_platform.training.config import ALL_LINEAR

    config = LoraConfig(r=rank, lora_alpha=alpha, use_rslora=rslora, target_modules=ALL_LINEAR)
    model = get_peft_model(LlamaForCausalLM.from_pretrained(start), config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_" in name:
                weight.normal_(0, 0.3)
    model.save_pretrained(folder / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(folder)
    return merged


def test_a_dpo_version_is_served_on_the_base_as_its_adapters_stacked(tmp_path: Path) -> None:
    """Base model + the served adapter (through PEFT, whose format vLLM reads) gives the logits of
    the DPO version the API serves in process; an SFT version is served with its own adapter."""
    import torch
    from peft import PeftModel
    from transformers import LlamaConfig, LlamaForCausalLM

    from twin_platform.registry import ModelRegistry
    from twin_platform.serving.adapters import AdapterError, serving_adapter

    torch.manual_seed(0)
    shape = LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    LlamaForCausalLM(shape).save_pretrained(tmp_path / "base")
    _train_stage(tmp_path / "base", tmp_path / "sft", rank=4, alpha=8, rslora=False)
    dpo_model = _train_stage(tmp_path / "sft", tmp_path / "dpo", rank=2, alpha=4, rslora=True)
    registry = ModelRegistry(tmp_path / "models")
    sft = registry.register(tmp_path / "sft", name="twin-ada", manifest={"lineage": {}})
    parent = {"name": sft.name, "version": sft.version, "stage": "sft"}
    lineage = {"lineage": {"parent": parent}}
    dpo = registry.register(tmp_path / "dpo", name="twin-ada", manifest=lineage)

    served = tmp_path / "served"
    assert serving_adapter(sft, registry, served) == sft.path / "adapter"
    stacked = serving_adapter(dpo, registry, served)
    assert stacked == served / "twin-ada" / f"v{dpo.version}"
    config = json.loads((stacked / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 6 and config["use_rslora"] is False
    on_base = PeftModel.from_pretrained(
        LlamaForCausalLM.from_pretrained(tmp_path / "base"), stacked
    )
    tokens = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(
            on_base(tokens).logits, dpo_model(tokens).logits, rtol=1e-4, atol=1e-4
        )

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    full = registry.register(tmp_path / "full", name="twin-ada", manifest={"lineage": {}})
    with pytest.raises(AdapterError, match="full fine-tune"):
        serving_adapter(full, registry, served)
