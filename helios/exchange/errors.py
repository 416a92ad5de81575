"""Typed exchange errors. The engine treats each kind differently:

* ``OrderRejected``   - the exchange (or local pair rules) definitely did not accept the order.
* ``OutcomeUnknown``  - the order may or may not exist: look it up by customerOrderId, never re-send blind.
* ``ExchangeUnavailable`` - the call failed before anything could have been accepted (connect refused, 5xx on a
  read-only call, ...). Safe to treat as "nothing happened".
* ``RateLimited``     - 429; carries ``retry_after`` seconds when the exchange said so.
"""

from __future__ import annotations


class ExchangeError(Exception):
    """Base class. ``code`` and ``message`` carry the exchange's own error where it gave one."""

    def __init__(self, message: str, *, code: int | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status


class OrderRejected(ExchangeError):
    pass


class OutcomeUnknown(ExchangeError):
    pass


class ExchangeUnavailable(ExchangeError):
    pass


class RateLimited(ExchangeError):
    def __init__(self, message: str, *, retry_after: float | None = None, http_status: int | None = 429) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class AuthenticationFailed(ExchangeError):
    pass
