"""The demo storefront as real HTTP servers on free localhost ports (one per test session).

`storefront` serves data/sample-store as is; `faulty_storefront` serves it with every fault on
(see scraper.demoshop.Faults and `.faults_info`). Both yield the running DemoShop: `.url`,
`.manifest`, `.facts()` (what a perfect crawl finds), `.hits` / `.count(path)` (requests so far;
the servers are shared by the whole session, so call `.reset()` first or compare differences).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scraper.demoshop import SAMPLE_SHOP, DemoShop, Faults

# The hanging page answers after 10 s: far past the 1-2 s timeouts tests set, even when a busy
# machine delays the crawler's timer by seconds (the crawl gives up first; nothing waits 10 s).
TEST_FAULTS = Faults(slow_delay=0.2, slow_every=10, hang_seconds=10.0)


@pytest.fixture(scope="session")
def storefront() -> Iterator[DemoShop]:
    with DemoShop(SAMPLE_SHOP) as server:
        yield server


@pytest.fixture(scope="session")
def faulty_storefront() -> Iterator[DemoShop]:
    with DemoShop(SAMPLE_SHOP, faults=TEST_FAULTS) as server:
        yield server
