"""LLM calls, all through one interface: `chat.ChatModel`, opened by `factory.open_chat_model`.

`options.LLMOptions` says which model and how to run it; `local` is the in-process backend (llama.cpp or
transformers, `batching` for concurrent requests on a GPU), `litellm_model` the one for every other
server or provider. Nothing heavy is imported here: llama.cpp, transformers and litellm load on first use.
"""
