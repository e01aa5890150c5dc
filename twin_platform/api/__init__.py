"""The REST face of the twin: RAG, an OpenAI-compatible chat API, feedback, health, a chat page.

`create_app(settings)` in `app.py` builds it; `twin serve` runs it with uvicorn.
"""
