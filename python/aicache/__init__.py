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

import os as _os

from ._aicache import AssistantCache, Store, TokenManager, __version__
from ._aicache import _after_fork_in_child
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

# A worker forked after import (gunicorn --preload, uwsgi without lazy-apps)
# starts its token managers' own refreshers at once rather than on its first
# token call. Every handle re-opens its objects in a child in any case (the
# extension counts forks with pthread_atfork, which sees forks made from C too).
_os.register_at_fork(after_in_child=_after_fork_in_child)
