"""What every service module shares: the error users see, and URLs safe to print."""

from urllib.parse import urlsplit, urlunsplit


class ServiceError(RuntimeError):
    """A service could not be started or reached. The message is one line, meant for the user."""


def redact(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))
