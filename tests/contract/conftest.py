"""Fixtures of the contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.contract.replay import Replay, replay_server


@pytest.fixture
def replay() -> Iterator[Replay]:
    """A loopback server answering with VALR's documented examples (routes set by each test)."""
    with replay_server(Replay()) as server:
        yield server
