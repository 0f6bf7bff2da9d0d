"""The demo storefront as real HTTP servers on free localhost ports (one per test session).

`storefront` serves data/sample-store as is; `faulty_storefront` serves it with every fault on
(see scraper.storefront.Faults and `.faults_info`). Both yield the running StoreServer: `.url`,
`.manifest`, `.facts()` (what a perfect crawl finds), `.hits` / `.count(path)` (requests so far;
the servers are shared by the whole session, so call `.reset()` first or compare differences).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scraper.storefront import SAMPLE_STORE, Faults, StoreServer

# Short enough for tests, longer than any sane crawler timeout set by a test (1-2 s).
TEST_FAULTS = Faults(slow_delay=0.2, slow_every=10, hang_seconds=4.0)


@pytest.fixture(scope="session")
def storefront() -> Iterator[StoreServer]:
    with StoreServer(SAMPLE_STORE) as server:
        yield server


@pytest.fixture(scope="session")
def faulty_storefront() -> Iterator[StoreServer]:
    with StoreServer(SAMPLE_STORE, faults=TEST_FAULTS) as server:
        yield server
