"""The litellm backend against a real OpenAI-compatible server, and the API serving through it.

The server is the project's own API (`twin serve`'s app: real Postgres, embedding model and SmolLM2)
on a free port, which speaks OpenAI's `/v1/chat/completions`; the backend reaches it as `openai/twin`.
A second API then serves that server as its model (`TWIN_SERVE_MODEL=openai/twin` +
`TWIN_SERVE_API_BASE`) through the same routes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rag_fixtures import load_corpus, start_server

from twin_platform.llm.chat import ChatModel
from twin_platform.llm.factory import open_chat_model
from twin_platform.llm.litellm_model import LiteLLMChatModel
from twin_platform.llm.options import LLMOptions
from twin_platform.serving.models import served_model_string
from twin_platform.settings import load_settings

KEY = "remote-key-0123456789"
QUERY = "What does Rhea Vance feed her sourdough starter?"


@pytest.fixture(scope="module")
def corpus(postgres_url: str) -> dict[str, str]:
    return load_corpus(postgres_url)


@pytest.fixture(scope="module")
def remote_base(corpus: dict[str, str]) -> Iterator[str]:
    """The twin API as a remote OpenAI-compatible server: its `/v1` base URL."""
    from twin_platform.api.app import create_app

    settings = load_settings(
        api_keys=KEY, api_max_new_tokens=16, gen_max_tokens=8, rag_k=1, rag_context_tokens=256
    )
    url, server, thread = start_server(create_app(settings))
    yield f"{url}/v1"
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def remote(remote_base: str) -> ChatModel:
    return open_chat_model(LLMOptions(model="openai/twin", api_base=remote_base, api_key=KEY))


def test_litellm_backend_chats_streams_and_counts_tokens(remote: ChatModel) -> None:
    assert isinstance(remote, LiteLLMChatModel)
    assert remote.name == "openai/twin" and remote.n_ctx == 2048  # unknown to litellm: the option
    messages = [{"role": "user", "content": QUERY}]
    result = remote.chat(messages, max_tokens=8, temperature=0.0)
    assert result.text.strip() and 0 < result.completion_tokens <= 8
    assert result.prompt_tokens > 20  # the server's prompt: system turn and retrieved context
    assert result.finish_reason in {"stop", "length"}
    deltas = list(remote.stream(messages, max_tokens=8, temperature=0.0))
    assert len(deltas) > 1
    assert "".join(deltas) == result.text  # greedy on the server: the same text, streamed
    short, long = remote.count_tokens("sourdough"), remote.count_tokens(QUERY * 3)
    assert 0 < short < long


def test_litellm_backend_reports_a_wrong_key(remote_base: str) -> None:
    wrong = open_chat_model(LLMOptions(model="openai/twin", api_base=remote_base, api_key="nope"))
    with pytest.raises(Exception, match=r"(?i)auth|api key"):
        wrong.chat([{"role": "user", "content": "hi"}], max_tokens=4, temperature=0.0)


def test_api_serves_a_remote_model_through_the_litellm_backend(
    remote_base: str, corpus: dict[str, str]
) -> None:
    import openai

    from twin_platform.api.app import create_app

    settings = load_settings(
        serve_model="openai/twin", serve_api_base=remote_base, serve_api_key=KEY, gen_max_tokens=8
    )
    url, server, thread = start_server(create_app(settings))
    try:
        with httpx.Client(base_url=url, timeout=120) as http:
            body = {"query": QUERY, "k": 1, "temperature": 0}
            answer = http.post("/rag", json=body)
            assert answer.status_code == 200, answer.text
            payload = answer.json()
            assert payload["answer"].strip() and payload["model"] == "base:openai/twin"
            assert 0 < payload["usage"]["completion_tokens"] <= 8
            assert payload["sources"][0]["source_url"] == "https://rhea.example/sourdough"

            events = []
            with http.stream("POST", "/rag", json=body | {"stream": True}) as response:
                assert response.status_code == 200
                events = [
                    json.loads(x[6:]) for x in response.iter_lines() if x.startswith("data: ")
                ]
            kinds = [e["type"] for e in events]
            assert kinds[0] == "sources" and kinds[-1] == "done" and "delta" in kinds
            assert "".join(e["text"] for e in events if e["type"] == "delta") == payload["answer"]

            ready = http.get("/ready").json()
            assert ready["generation_model"] is True and ready["model"] == "base:openai/twin"

        sdk = openai.OpenAI(base_url=f"{url}/v1", api_key="unused: this API is open")
        completion = sdk.chat.completions.create(
            model="twin",
            messages=[{"role": "user", "content": QUERY}],
            max_tokens=8,
            temperature=0,
            extra_body={"k": 1},
        )
        assert completion.choices[0].message.content.strip()
    finally:
        server.should_exit = True
        thread.join(timeout=30)


# Options and model strings --------------------------------------------------------------------------


def test_options_from_settings_keep_the_key_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_LLM_MODEL", "openai/served")
    monkeypatch.setenv("TWIN_LLM_API_BASE", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TWIN_LLM_API_KEY", "sk-secret-value")
    monkeypatch.setenv("TWIN_LLM_THREADS", "3")
    settings = load_settings()
    options = LLMOptions.from_settings(settings)
    assert (options.model, options.api_base, options.api_key, options.threads) == (
        "openai/served",
        "http://127.0.0.1:9/v1",
        "sk-secret-value",
        3,
    )
    assert "sk-secret-value" not in repr(options)
    # The configured server and key belong to the configured model, not to another one.
    other = LLMOptions.from_settings(settings, "ollama/llama3")
    assert (other.model, other.api_base, other.api_key, other.threads) == (
        "ollama/llama3",
        None,
        None,
        3,
    )


def test_serve_model_strings(tmp_path: Path) -> None:
    assert served_model_string(str(tmp_path), None) == f"twin-local/{tmp_path}"
    hf_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert served_model_string(hf_id, None) == f"twin-local/{hf_id}"
    assert served_model_string("openai/gpt-4o-mini", None) == "openai/gpt-4o-mini"
    assert served_model_string("ollama/llama3", None) == "ollama/llama3"
    assert served_model_string("my-model", "http://127.0.0.1:9/v1") == "my-model"
    assert served_model_string("twin-local/openai/gpt-oss-20b", None) == (
        "twin-local/openai/gpt-oss-20b"
    )
