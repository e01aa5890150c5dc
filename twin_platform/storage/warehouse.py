"""The data warehouse: raw documents in a MongoDB-protocol server, one collection per category.

Documents are grouped by what they are (articles, posts, repositories), not by the platform they came
from. Each collection is unique on (author, url), which makes every ingest an idempotent upsert.
"""

from __future__ import annotations

import pymongo
from pymongo.database import Database

from twin_platform.documents import Category


def connect(uri: str, database: str) -> Database:
    client: pymongo.MongoClient = pymongo.MongoClient(
        uri, tz_aware=True, serverSelectionTimeoutMS=10_000
    )
    return client[database]


def ensure_indexes(db: Database) -> None:
    """Idempotent: creating an index that exists is a no-op."""
    for category in Category:
        collection = db[category.value]
        collection.create_index(
            [("author", pymongo.ASCENDING), ("url", pymongo.ASCENDING)],
            unique=True,
            name="author_url_unique",
        )
        collection.create_index([("content_hash", pymongo.ASCENDING)], name="content_hash")
