"""Security tests reuse the service fixtures (a real ``helios run`` process on loopback)."""

from tests.service.conftest import service_factory

__all__ = ["service_factory"]
