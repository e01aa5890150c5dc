"""LLM calls: the in-process local model (`local`) and the one litellm entry point (`provider`).

Nothing heavy is imported here: llama.cpp, transformers and litellm load on first use.
"""
