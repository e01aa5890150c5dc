"""X/Twitter archive: `data/tweets.js` (or `tweet.js`, `tweets-part*.js`) and `data/account.js`."""

from __future__ import annotations

import html
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from twin_platform.crawlers.base import Collected, Failure
from twin_platform.documents import Post
from twin_platform.importers.archive import read_text


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
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def import_x(data_dir: Path, author: str) -> Collected:
    """Original posts and replies as posts; retweets are skipped (someone else's words)."""
    result = Collected()
    username = _username(data_dir) or "i/web"
    files = sorted(p for p in data_dir.glob("tweet*.js") if p.name != "tweet-headers.js")
    for path in files:
        try:
            items = _load_js(path)
        except ValueError as exc:
            result.failures.append(Failure(str(path), f"not a readable archive file ({exc})"))
            continue
        if not isinstance(items, list):
            result.failures.append(Failure(str(path), "expected a list of tweets"))
            continue
        for index, item in enumerate(items):
            tweet = item.get("tweet", item) if isinstance(item, dict) else None
            text = tweet.get("full_text") or tweet.get("text") if isinstance(tweet, dict) else None
            tweet_id = tweet.get("id_str") or tweet.get("id") if isinstance(tweet, dict) else None
            if not text or not tweet_id:
                result.failures.append(Failure(f"{path.name} item {index}", "no text or id"))
                continue
            if text.startswith("RT @"):
                result.skipped.append(Failure(f"{path.name} item {index}", "retweet"))
                continue
            try:
                published = datetime.strptime(
                    tweet.get("created_at", ""), "%a %b %d %H:%M:%S %z %Y"
                )
            except ValueError:
                published = None
            result.documents.append(
                Post(
                    author=author,
                    platform="x",
                    url=f"https://x.com/{username}/status/{tweet_id}",
                    content=html.unescape(text),
                    published_at=published,
                    metadata={
                        "favorite_count": tweet.get("favorite_count"),
                        "retweet_count": tweet.get("retweet_count"),
                    },
                )
            )
    return result
