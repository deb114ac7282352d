"""aicache: the C++ cache of AI-assistant backends, for Python and Django.

- ``AssistantCache``: the Django system's AIAssistantCache, method for method,
  on the in-process memory store or on Redis (Django-compatible keys and JSON).
- ``TokenManager``: access tokens of WeChat, WeCom and DingTalk apps with one
  upstream fetch per refresh across processes.
- ``Store``: the byte-level store under ``aicache.django.AicacheCache``, the
  Django cache backend.

Thread-safe; the GIL is released during Redis I/O and token fetches; safe to
import before gunicorn or uwsgi fork their workers (each worker opens its own
connections and refresher on first use).
"""

from ._aicache import AssistantCache, Store, TokenManager, __version__
from ._errors import (
    ConfigError,
    Error,
    InvalidArgumentError,
    NotFoundError,
    RateLimitedError,
    StoreError,
    UpstreamError,
)

__all__ = [
    "AssistantCache",
    "TokenManager",
    "Store",
    "Error",
    "InvalidArgumentError",
    "ConfigError",
    "StoreError",
    "UpstreamError",
    "RateLimitedError",
    "NotFoundError",
    "__version__",
]
