"""X/Twitter archive: `data/tweets.js` (or `tweet.js`, `tweets-part*.js`) and `data/account.js`."""

from __future__ import annotations

import html
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from twin_platform.collection.collected import Collected, Failure, Skipped
from twin_platform.collection.importers.archive import find, read_text
from twin_platform.collection.importers.base import Importer
from twin_platform.documents import Post

_SURROGATES = re.compile("[\ud800-\udfff]")


def _load_js(path: Path) -> Any:
    """The archive's files are JavaScript: `window.YTD.tweets.part0 = [...]`."""
    text, _ = read_text(path)
    _, _, payload = text.partition("=")
    return json.loads(payload)


def _username(data_dir: Path) -> str | None:
    account = data_dir / "account.js"
    if not account.is_file():
        return None
    try:
        return _load_js(account)[0]["account"]["username"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        return None


def import_x(data_dir: Path, author: str) -> Collected:
    """Original posts and replies as posts; retweets are skipped (someone else's words)."""
    result = Collected()
    username = _username(data_dir) or "i/web"
    files = sorted(p for p in data_dir.glob("tweet*.js") if p.name != "tweet-headers.js")
    for path in files:
        try:
            items = _load_js(path)
        except Exception as exc:  # broken or absurdly nested JSON costs this file only
            result.failures.append(Failure(str(path), f"not a readable archive file ({exc})"))
            continue
        if not isinstance(items, list):
            result.failures.append(Failure(str(path), "expected a list of tweets"))
            continue
        for index, item in enumerate(items):
            where = f"{path.name} item {index}"
            result.add(where, import_tweet, item, where, username, author)
    return result


def import_tweet(item: Any, where: str, username: str, author: str) -> Post | Failure:
    tweet = item.get("tweet", item) if isinstance(item, dict) else None
    text = tweet.get("full_text") or tweet.get("text") if isinstance(tweet, dict) else None
    tweet_id = tweet.get("id_str") or tweet.get("id") if isinstance(tweet, dict) else None
    if not isinstance(text, str) or not text or not tweet_id:
        return Failure(where, "no text or id")
    if text.startswith("RT @"):
        return Skipped(where, "retweet")
    try:
        published = datetime.strptime(tweet.get("created_at", ""), "%a %b %d %H:%M:%S %z %Y")
    except (TypeError, ValueError):
        published = None
    return Post(
        author=author,
        platform="x",
        url=f"https://x.com/{username}/status/{tweet_id}",
        # JSON escapes can carry lone surrogates, which no UTF-8 store accepts
        content=_SURROGATES.sub("\ufffd", html.unescape(text)),
        published_at=published,
        metadata={
            "favorite_count": tweet.get("favorite_count"),
            "retweet_count": tweet.get("retweet_count"),
        },
    )


def detect(root: Path) -> Path | None:
    """The archive's data folder, where `tweets.js` (or its parts) is."""
    tweets = find(root, "tweets.js") or find(root, "tweet.js") or find(root, "tweets-part*.js")
    return tweets.parent if tweets is not None else None


IMPORTER = Importer("x", detect, lambda data_dir, author, options: import_x(data_dir, author))
