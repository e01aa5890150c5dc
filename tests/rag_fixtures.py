"""A small, known corpus written straight into the feature store with the real embedding model.

Each chunk states one fact that a query must find; two authors share a topic (sourdough) so author
filters are tested; one text is cross-posted under two URLs so de-duplication is tested.
"""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

from twin_platform.features.embedding import load_embedder
from twin_platform.servers.process import free_port
from twin_platform.settings import load_settings
from twin_platform.storage.feature_store import writes
from twin_platform.storage.feature_store.records import Chunk, CleanedDocument
from twin_platform.storage.postgres import connect

CORPUS = [
    # (author, category, url, content)
    ("rhea-vance", "articles", "https://rhea.example/sourdough",
     "My sourdough starter is called Gerald. I feed Gerald rye flour every morning at six, and the "
     "loaves rise best when the kitchen stays at twenty-four degrees."),
    ("rhea-vance", "posts", "https://rhea.example/posts/locks",
     "Postgres advisory locks keep our schema migrations safe when ten workers start at the same "
     "moment: the first takes the lock, the others wait and then find nothing left to do."),
    ("rhea-vance", "repositories", "https://github.com/rhea-vance/quillstack",
     "def zephyr_tokenize(text):\n    # QuillStack splits text on unicode word boundaries, then merges"
     " hyphenated compounds back together.\n    return merge_compounds(split_words(text))"),
    ("rhea-vance", "articles", "https://rhea.example/cycling",
     "Cycling to work through winter taught me to love mudguards, studded tyres and very warm gloves."),
    ("rhea-vance", "posts", "https://rhea.example/posts/locks-crosspost",
     "Postgres advisory locks keep our schema migrations safe when ten workers start at the same "
     "moment: the first takes the lock, the others wait and then find nothing left to do."),
    ("bob-stone", "articles", "https://bob.example/spelt",
     "My sourdough uses spelt flour and a long cold proof in the fridge for two days."),
    ("bob-stone", "posts", "https://bob.example/posts/dolomites",
     "Trail running in the Dolomites: start before dawn, carry two litres of water, respect the storms."),
]  # fmt: skip


def load_corpus(postgres_url: str) -> dict[str, str]:
    """Write the corpus through the feature store's own functions (idempotent); return {url: chunk_id}."""
    settings = load_settings()
    embedder = load_embedder(settings.embedding_model)
    vectors = embedder.encode([c[3] for c in CORPUS])
    documents, chunks = [], []
    for author, category, url, content in CORPUS:
        document_id = hashlib.sha256(f"{category}|{author}|{url}".encode()).hexdigest()
        content_hash = hashlib.sha256(content.encode()).hexdigest()
        documents.append(
            CleanedDocument(
                document_id,
                author,
                category,
                "web",
                url,
                None,
                content,
                content_hash,
                "en",
                None,
                "ok",
                "test",
            )
        )
        chunk_id = hashlib.sha256(f"{document_id}|{content}".encode()).hexdigest()
        chunks.append(
            Chunk(
                chunk_id=chunk_id,
                document_id=document_id,
                author=author,
                category=category,
                source_url=url,
                content=content,
                token_count=len(content) // 4,
            )
        )
    with connect(postgres_url) as conn:
        writes.upsert_cleaned(conn, documents)
        with conn.transaction():
            conn.execute(
                "DELETE FROM embedded_chunks WHERE chunk_id = ANY(%s)",
                ([c.chunk_id for c in chunks],),
            )
            writes.insert_embeddings(conn, chunks, vectors, embedder.name)
    return {c.source_url: c.chunk_id for c in chunks}


def start_server(app: Any) -> tuple[str, Any, threading.Thread]:
    """uvicorn serving `app` on a free port in a thread of this process: real HTTP, shared models."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 180
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "API did not start"
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}", server, thread
