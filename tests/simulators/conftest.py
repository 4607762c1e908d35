"""A Mosquitto per test module: simulated fleets publish retained statuses and last wills, which
must not reach the shared broker that other tests' collectors subscribe to."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.simulators.helpers import mosquitto


@pytest.fixture(scope="module")
def sim_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    with mosquitto(tmp_path_factory.mktemp("mosquitto")) as address:
        yield address
