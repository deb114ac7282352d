"""aicache's exceptions: one per kind of failure, each with the C++ error's code.

Every exception is an ``aicache.Error`` with ``code`` (the C++ ErrorCode's
name: "invalid_argument", "config", "unavailable", "upstream"...),
``message`` (never holding a password, app secret or token) and, for
token platforms' failures, ``platform_code`` (the platform's errcode, or
DingTalk's string code; None when it gave none).
"""

import re

__all__ = [
    "Error",
    "InvalidArgumentError",
    "ConfigError",
    "StoreError",
    "UpstreamError",
    "RateLimitedError",
    "NotFoundError",
]


class Error(Exception):
    """An aicache failure: ``code``, ``message``, ``platform_code``, ``retry_after``."""

    def __init__(self, code, message, retry_after=0):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after = retry_after
        match = _PLATFORM_CODE.search(message)
        self.platform_code = match.group(1) if match else None


class InvalidArgumentError(Error, ValueError):
    """Bad input (a key, a token, a JSON value out of range); nothing was stored."""


class ConfigError(Error):
    """Bad configuration: a file, the environment, a Redis URL, an app's secret
    (the platform refused it: ``platform_code`` says why)."""


class StoreError(Error):
    """The store failed: unreachable, timed out, out of pooled connections,
    refused the password, or holds a value of the wrong kind."""


class UpstreamError(Error):
    """A token platform answered with an error or could not be reached, and no
    valid token was left to serve."""


class RateLimitedError(Error):
    """Refused by aicache's own limit before any work; try after ``retry_after`` s."""


class NotFoundError(Error, LookupError):
    """A named thing that must exist does not (an app that is not configured)."""


# "platform error 40125 (invalid appsecret): ..." (src/tokens/platform_responses.cc)
_PLATFORM_CODE = re.compile(r"platform error (\S+) \(")

_BY_CODE = {
    "invalid_argument": InvalidArgumentError,
    "config": ConfigError,
    "unavailable": StoreError,
    "timeout": StoreError,
    "resource_exhausted": StoreError,
    "permission_denied": StoreError,
    "failed_precondition": StoreError,
    "out_of_range": InvalidArgumentError,
    "upstream": UpstreamError,
    "rate_limited": RateLimitedError,
    "not_found": NotFoundError,
}


def _make(code, message, retry_after):
    """The exception for a C++ error (called by the extension)."""
    return _BY_CODE.get(code, Error)(code, message, retry_after)
