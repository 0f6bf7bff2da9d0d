"""The demo shop: a small local storefront to crawl in tests, the demo and benchmarks.

Not part of the crawler. `sample` builds a shop folder (a manifest plus images) from product
data, `pages` renders its pages, `faults` adds the misbehaving parts a crawler must survive and
`server` serves it on a local port. The committed sample shop is `data/sample-store/`.

    with DemoShop(SAMPLE_SHOP, faults=Faults()) as shop:
        crawl(settings, shop.url)
"""

from scraper.demoshop.faults import Faults
from scraper.demoshop.sample import SAMPLE, SampleSpec, build_shop, load_manifest
from scraper.demoshop.server import SAMPLE_SHOP, DemoShop, ShopFacts

__all__ = ["SAMPLE", "SAMPLE_SHOP", "DemoShop", "Faults", "SampleSpec", "ShopFacts",
           "build_shop", "load_manifest"]
