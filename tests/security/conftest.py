"""Security tests reuse the service fixtures (a real ``helios run`` process on loopback); the sandbox tests share
one real systemd-nspawn host (tests/security/sandbox_host.py)."""

from collections.abc import Iterator

import pytest

from tests.security.sandbox_host import SecHost, security_host
from tests.service.conftest import service_factory

__all__ = ["service_factory"]


@pytest.fixture(scope="session")
def sec_host() -> Iterator[SecHost]:
    yield from security_host()
