"""Typed exchange errors. The engine treats each kind differently:

* ``OrderRejected``   - the exchange (or local pair rules) definitely did not accept the order.
* ``OutcomeUnknown``  - the order may or may not exist: look it up by customerOrderId, never re-send blind.
* ``ExchangeUnavailable`` - the call failed before anything could have been accepted (connect refused, 5xx on a
  read-only call, ...). Safe to treat as "nothing happened".
* ``RateLimited``     - 429; carries ``retry_after`` seconds when the exchange said so. Never raised for an order
  placement: nothing in VALR's material says a 429 was not processed, so a placement 429 is ``OutcomeUnknown``.
* ``ExchangeReadOnly`` - VALR is in read-only mode (``/v1/public/status`` = ``read-only``; private calls answer 503).
  A typed state, not a transient failure: nothing can be placed or cancelled until VALR is ``online`` again.
* ``DeadlineExceeded`` - the caller's overall deadline ran out before an answer (a subclass of ``OutcomeUnknown`` for
  placements, of ``ExchangeUnavailable`` otherwise: see ``deadline_error``).
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
    """``order_id`` is VALR's id when the order reached the matching engine and failed there (status Failed)."""

    order_id: str | None = None


class OutcomeUnknown(ExchangeError):
    """The order may or may not exist. ``read_only`` is True when VALR said it is in read-only mode."""

    read_only: bool = False


class ExchangeUnavailable(ExchangeError):
    pass


class RateLimited(ExchangeError):
    def __init__(self, message: str, *, retry_after: float | None = None, http_status: int | None = 429) -> None:
        super().__init__(message, http_status=http_status)
        self.retry_after = retry_after


class AuthenticationFailed(ExchangeError):
    pass


class ExchangeReadOnly(ExchangeUnavailable):
    """VALR is in read-only mode: private calls answer 503 until ``/v1/public/status`` is ``online`` again."""


class DeadlineExceeded(ExchangeUnavailable):
    """The caller's overall deadline ran out before the call could be sent (nothing was sent)."""


class PlacementDeadlineExceeded(OutcomeUnknown):
    """The caller's overall deadline ran out while a placement was in flight: look the order up."""


class PlacementRateLimited(OutcomeUnknown):
    """A placement answered 429. Nothing in VALR's material says it was not processed: outcome unknown."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, http_status=429)
        self.retry_after = retry_after
