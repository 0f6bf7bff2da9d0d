"""The demo storefront over real HTTP: pages, robots, sitemaps, images, traps, faults, CLI."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.robotparser
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import requests

from catalog.errors import ImageRejected, InvalidInput
from catalog.images import inspect_image
from scraper.demoshop import SAMPLE_SHOP, DemoShop, Faults, SampleSpec, build_shop, load_manifest

ROOT = Path(__file__).resolve().parent.parent
SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
IMG = "{http://www.google.com/schemas/sitemap-image/1.1}"


def get(server: DemoShop, path: str, **kw) -> requests.Response:
    return requests.get(server.url + path, timeout=10, **kw)


def ld_blocks(html: str) -> list[str]:
    return re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)


def product(server: DemoShop, pid: str) -> dict:
    return next(p for p in server.products if p["id"] == pid)


def follow_listing(server: DemoShop, path: str) -> list[str]:
    """Product links of a listing, following rel=next to the end."""
    found, seen = [], set()
    while path and path not in seen:
        seen.add(path)
        page = get(server, path)
        assert page.status_code == 200
        grid = page.text.split('<ul class="grid">', 1)[1].split("</ul>", 1)[0]
        found += re.findall(r'href="(/p/[^"]+)"', grid)
        nxt = re.search(r'<link rel="next" href="([^"]+)"', page.text)
        path = nxt.group(1) if nxt else ""
    return found


# ---- the committed sample -----------------------------------------------------------------


def test_sample_folder_is_small_balanced_and_documented():
    size = sum(f.stat().st_size for f in SAMPLE_SHOP.rglob("*") if f.is_file())
    assert size < 5 * 1024 * 1024
    manifest = load_manifest(SAMPLE_SHOP)
    subs = Counter(p["category"].split(" > ")[1] for p in manifest["products"] if p["category"])
    assert len(subs) >= 8 and min(subs.values()) >= 30, subs
    assert 300 <= len(manifest["products"]) <= 450
    readme = (SAMPLE_SHOP / "README.md").read_text()
    assert "Param Aggarwal" in readme and "MIT" in readme and "build.py" in readme
    assert f"\n{len(manifest['products'])} products: {len(subs)} visually distinct" in readme


def test_answers_cover_exactly_the_uncategorised_products():
    manifest = load_manifest(SAMPLE_SHOP)
    with (SAMPLE_SHOP / "answers.csv").open() as fh:
        answers = {row["id"]: row for row in csv.DictReader(fh)}
    uncategorised = {p["id"] for p in manifest["products"] if not p["category"]}
    assert set(answers) == uncategorised == set(manifest["fixtures"]["uncategorised"])
    assert 20 <= len(answers) <= 40
    for row in answers.values():
        assert row["category"].split(" > ")[1] == row["subCategory"]


# ---- pages --------------------------------------------------------------------------------


def test_home_links_categories_new_arrivals_and_account(storefront):
    page = get(storefront, "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    links = set(re.findall(r'href="([^"]+)"', page.text))
    assert {"/c/apparel", "/c/apparel/topwear", "/c/footwear/shoes", "/new", "/account/"} <= links


def test_category_pagination_reaches_every_product_once(storefront):
    facts = storefront.facts()
    tops = [p for p in facts.products.values()
            if (p["category"] or "").startswith("Apparel > Topwear")]
    first = get(storefront, "/c/apparel/topwear")
    assert '<link rel="next" href="/c/apparel/topwear?page=2">' in first.text
    assert 'class="load-more" href="/c/apparel/topwear?page=2"' in first.text
    assert '<a href="/c/apparel/topwear?page=2">2</a>' in first.text
    links = follow_listing(storefront, "/c/apparel/topwear")
    assert len(links) == len(set(links)) == len(tops)
    assert {storefront.url + u for u in links} == {p["url"] for p in tops}


def test_listing_page_out_of_range_or_bad_is_404(storefront):
    assert get(storefront, "/c/apparel/topwear?page=99").status_code == 404
    assert get(storefront, "/c/apparel/topwear?page=abc").status_code == 404
    assert get(storefront, "/c/no-such-category").status_code == 404
    assert get(storefront, "/p/no-such-product").status_code == 404


def test_jsonld_product_and_breadcrumb_match_the_manifest(storefront):
    p = next(q for q in storefront.products if q["markup"] == "jsonld" and q["category"])
    page = get(storefront, f"/p/{p['slug']}").text
    docs = [json.loads(b) for b in ld_blocks(page)]
    prod = next(d for d in docs if d["@type"] == "Product")
    assert (prod["name"], prod["sku"], prod["brand"]["name"]) == (p["title"], p["sku"], p["brand"])
    assert prod["offers"]["price"] == f"{p['price']:.2f}"
    assert prod["image"] == [f"{storefront.url}/images/{p['images'][0]}"]
    crumbs = next(d for d in docs if d["@type"] == "BreadcrumbList")["itemListElement"]
    assert " > ".join(c["name"] for c in crumbs) == p["category"]
    assert f'<meta property="og:image" content="{prod["image"][0]}">' in page
    assert re.search(r'<nav class="breadcrumb".*?Home.*?</nav>', page)


def test_graph_microdata_and_opengraph_pages(storefront):
    import extruct

    styles = storefront.manifest["fixtures"]["markup"]
    graph = product(storefront, styles["graph"][0])
    doc = json.loads(ld_blocks(get(storefront, f"/p/{graph['slug']}").text)[0])
    assert [d["@type"] for d in doc["@graph"]] == ["Product", "BreadcrumbList"]

    micro = product(storefront, styles["microdata"][0])
    page = get(storefront, f"/p/{micro['slug']}").text
    assert not ld_blocks(page)
    data = extruct.extract(page, base_url=storefront.url, syntaxes=["microdata"])["microdata"]
    types = {d["type"].rsplit("/", 1)[-1]: d["properties"] for d in data}
    assert types["Product"]["name"] == micro["title"]
    assert types["Product"]["image"].endswith(micro["images"][0])
    crumbs = [e["properties"]["name"] for e in types["BreadcrumbList"]["itemListElement"]]
    assert " > ".join(crumbs) == micro["category"]

    assert len(styles["opengraph"]) == 2
    og = product(storefront, styles["opengraph"][0])
    page = get(storefront, f"/p/{og['slug']}").text
    assert not ld_blocks(page) and "itemscope" not in page
    assert f'<meta property="product:category" content="{og["category"]}">' in page.replace(
        "&gt;", ">")
    assert f'og:image" content="{storefront.url}/images/{og["images"][0]}"' in page


def test_malformed_jsonld_page_still_has_breadcrumb_and_og_image(storefront):
    p = product(storefront, storefront.manifest["fixtures"]["malformed_jsonld"])
    page = get(storefront, f"/p/{p['slug']}").text
    (block,) = ld_blocks(page)
    with pytest.raises(json.JSONDecodeError):
        json.loads(block)
    last = p["category"].split(" > ")[-1]
    assert re.search(rf'<nav class="breadcrumb".*>{re.escape(last)}</a>', page)
    assert f'og:image" content="{storefront.url}/images/{p["images"][0]}"' in page


def test_lazy_and_srcset_image_tags(storefront):
    styles = storefront.manifest["fixtures"]["img_styles"]
    for style, ids in styles.items():
        p = product(storefront, ids[0])
        page = get(storefront, f"/p/{p['slug']}").text
        gallery = page.split('<div class="gallery">', 1)[1].split("</div>", 1)[0]
        assert f"{style}=" in gallery, style
        assert f"/images/{p['images'][0]}" in gallery
    p = product(storefront, styles["srcset"][0])
    thumb = get(storefront, f"/images/{p['thumb']}")
    full = get(storefront, f"/images/{p['images'][0]}")
    assert thumb.status_code == full.status_code == 200
    assert len(thumb.content) < len(full.content)


def test_uncategorised_products_only_on_new_arrivals(storefront):
    facts = storefront.facts()
    p = product(storefront, facts.uncategorised[0])
    page = get(storefront, f"/p/{p['slug']}").text
    assert not [b for b in ld_blocks(page) if "BreadcrumbList" in b]
    assert 'class="breadcrumb"' not in page
    assert "product:category" not in page
    new = {storefront.url + u for u in follow_listing(storefront, "/new")}
    assert new == {facts.products[i]["url"] for i in facts.uncategorised}
    listed = {storefront.url + u for top in ("accessories", "apparel", "footwear")
              for u in follow_listing(storefront, f"/c/{top}")}
    assert not listed & new
    assert len(listed) == len(facts.products) - len(facts.uncategorised)


def test_private_files_are_not_served(storefront):
    for path in ("/products.json", "/products/x", "/answers.csv", "/images/../products.json",
                 "/images/..%2fproducts.json", "/images/", "/build.py"):
        assert get(storefront, path).status_code == 404, path


# ---- robots and sitemaps ------------------------------------------------------------------


def test_robots_disallows_account_and_names_the_sitemap(storefront):
    text = get(storefront, "/robots.txt").text
    robots = urllib.robotparser.RobotFileParser()
    robots.parse(text.splitlines())
    assert not robots.can_fetch("slashcat", f"{storefront.url}/account/")
    assert robots.can_fetch("slashcat", f"{storefront.url}/p/anything")
    assert robots.site_maps() == [f"{storefront.url}/sitemap.xml"]


def test_sitemap_index_lists_every_product_with_its_images(storefront):
    index = ET.fromstring(get(storefront, "/sitemap.xml").content)
    assert index.tag == f"{SM}sitemapindex"
    locs = [e.text for e in index.iter(f"{SM}loc")]
    assert f"{storefront.url}/sitemap-categories.xml" in locs
    urls: dict[str, list[str]] = {}
    for loc in locs:
        if "products" in loc:
            root = ET.fromstring(requests.get(loc, timeout=10).content)
            for url in root.iter(f"{SM}url"):
                images = [i.text for i in url.iter(f"{IMG}loc")]
                urls[url.find(f"{SM}loc").text] = images
    facts = storefront.facts()
    assert urls == {p["url"]: p["image_urls"] for p in facts.products.values()}
    cats = ET.fromstring(get(storefront, "/sitemap-categories.xml").content)
    assert f"{storefront.url}/c/apparel/topwear/tshirts" in [e.text for e in cats.iter(f"{SM}loc")]
    assert get(storefront, "/sitemap-products-9.xml").status_code == 404


def test_large_store_splits_its_sitemap(tmp_path):
    manifest = load_manifest(SAMPLE_SHOP)
    manifest.update(sitemap_chunk=100, image_root=str(SAMPLE_SHOP / "images"))
    (tmp_path / "products.json").write_text(json.dumps(manifest))
    with DemoShop(tmp_path) as server:
        index = ET.fromstring(get(server, "/sitemap.xml").content)
        locs = [e.text for e in index.iter(f"{SM}loc") if "products" in e.text]
        assert len(locs) == -(-len(manifest["products"]) // 100)
        total = sum(len(ET.fromstring(requests.get(u, timeout=10).content)) for u in locs)
        assert total == len(manifest["products"])


# ---- images -------------------------------------------------------------------------------


def test_images_answer_conditional_requests_with_304(storefront):
    name = storefront.products[0]["images"][0]
    before = storefront.count(f"/images/{name}")
    first = get(storefront, f"/images/{name}")
    assert first.status_code == 200 and first.headers["Content-Type"] == "image/jpeg"
    assert first.content == (SAMPLE_SHOP / "images" / name).read_bytes()
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert get(storefront, f"/images/{name}", headers={"If-None-Match": etag}).status_code == 304
    assert get(storefront, f"/images/{name}",
               headers={"If-Modified-Since": modified}).status_code == 304
    older = "Mon, 01 Jan 2024 00:00:00 GMT"
    assert get(storefront, f"/images/{name}",
               headers={"If-Modified-Since": older}).status_code == 200
    other = get(storefront, f"/images/{name}", headers={"If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.content == first.content
    head = requests.head(f"{storefront.url}/images/{name}", timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(first.content))
    assert storefront.count(f"/images/{name}") == before + 6
    assert ("GET", f"/images/{name}", 304, requests.utils.default_user_agent()) in storefront.log


def test_trap_images_in_the_sample(storefront):
    fx = storefront.manifest["fixtures"]
    facts = storefront.facts()
    a, b = (facts.products[i]["image_urls"] for i in fx["same_image_url"])
    assert a == b
    a, b = (facts.products[i]["image_urls"][0] for i in fx["same_image_bytes"])
    assert a != b and facts.image_sha256[a] == facts.image_sha256[b]

    near = {k: inspect_image(requests.get(facts.products[v]["image_urls"][0], timeout=10).content)
            for k, v in fx["near_duplicates"].items()}
    assert len({f.sha256 for f in near.values()}) == 3
    assert near["resized"].width < near["original"].width
    for copy in ("resized", "recompressed"):
        assert bin(near[copy].phash ^ near["original"].phash).count("1") <= 8

    truncated = requests.get(facts.products[fx["truncated_image"]]["image_urls"][0], timeout=10)
    with pytest.raises(ImageRejected) as err:
        inspect_image(truncated.content)
    assert err.value.reason == "truncated"
    missing = facts.products[fx["missing_image"]]["image_urls"][0]
    assert requests.get(missing, timeout=10).status_code == 404


def test_counters_and_concurrent_clients(storefront):
    slugs = [p["slug"] for p in storefront.products[:40]]
    before = {s: storefront.count(f"/p/{s}") for s in slugs}
    statuses: list[int] = []

    def fetch(chunk: list[str]) -> None:
        with requests.Session() as session:
            statuses.extend(session.get(f"{storefront.url}/p/{s}", timeout=10).status_code
                            for s in chunk)

    threads = [threading.Thread(target=fetch, args=(slugs[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 40
    assert all(storefront.count(f"/p/{s}") == before[s] + 1 for s in slugs)
    assert storefront.count(f"{storefront.url}/p/{slugs[0]}") == before[slugs[0]] + 1
    assert storefront.errors == []


# ---- faults -------------------------------------------------------------------------------


def test_slow_pages_and_a_500_that_succeeds_on_retry(faulty_storefront):
    info = faulty_storefront.faults_info
    slow = f"/p/{info['slow']['slugs'][0]}"
    start = time.perf_counter()
    assert get(faulty_storefront, slow).status_code == 200
    assert time.perf_counter() - start >= info["slow"]["delay"]
    faulty_storefront.reset()
    flaky = info["flaky_500"]["url"]
    assert [requests.get(flaky, timeout=10).status_code for _ in range(3)] == [500, 200, 200]
    faulty_storefront.reset()  # the next request fails again
    assert requests.get(flaky, timeout=10).status_code == 500


def test_redirects_to_an_internal_address(faulty_storefront):
    info = faulty_storefront.faults_info
    for kind, path in (("redirect_page", "/internal/admin"),
                       ("redirect_image", "/internal/secret.jpg")):
        url = info[kind]["url"] if kind == "redirect_page" else info[kind]["image_urls"][0]
        first = requests.get(url, allow_redirects=False, timeout=10)
        assert first.status_code == 302
        assert first.headers["Location"] == f"{faulty_storefront.internal_url}{path}"
        assert faulty_storefront.internal_url.startswith("http://127.0.0.2:")
    assert faulty_storefront.internal_hits[path] == 0
    followed = requests.get(info["redirect_image"]["image_urls"][0], timeout=10)
    assert followed.text == "internal secret"
    assert faulty_storefront.internal_hits["/internal/secret.jpg"] == 1
    faulty_storefront.reset()


def test_bad_images_are_rejected_for_the_right_reason(faulty_storefront):
    info = faulty_storefront.faults_info
    expected = {"bomb": ("image/png", "too-many-pixels"),
                "html_as_image": ("image/jpeg", "not-an-image"),
                "tracker": ("image/gif", "too-small")}
    for kind, (ctype, reason) in expected.items():
        response = requests.get(info[kind]["image_urls"][0], timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"] == ctype
        with pytest.raises(ImageRejected) as err:
            inspect_image(response.content)
        assert err.value.reason == reason, kind
    bomb = requests.get(info["bomb"]["image_urls"][0], timeout=10).content
    assert len(bomb) < 200_000 and bomb[16:24] == (20000).to_bytes(4, "big") * 2


def test_endless_pagination_and_hanging_page(faulty_storefront):
    assert '<a href="/lookbook">' in get(faulty_storefront, "/").text
    for n in (1, 57, 12345):
        page = get(faulty_storefront, f"/lookbook?page={n}")
        assert page.status_code == 200
        assert f'<link rel="next" href="/lookbook?page={n + 1}">' in page.text
    with pytest.raises(requests.exceptions.Timeout):
        requests.get(faulty_storefront.faults_info["hang"]["url"], timeout=0.5)


def test_fault_products_are_discoverable(faulty_storefront):
    new = {faulty_storefront.url + u for u in follow_listing(faulty_storefront, "/new")}
    sitemap = get(faulty_storefront, "/sitemap-products-1.xml").text
    for kind in ("redirect_page", "redirect_image", "bomb", "html_as_image", "tracker", "hang"):
        url = faulty_storefront.faults_info[kind]["url"]
        assert url in new and f"<loc>{url}</loc>" in sitemap, kind


def test_shopify_flavour_serves_products_json(tmp_path):
    with DemoShop(SAMPLE_SHOP, shopify=True) as server:
        facts = server.facts()
        seen = []
        for page in range(1, 10):
            items = get(server, f"/products.json?limit=250&page={page}").json()["products"]
            if not items:
                break
            seen += items
        assert len(seen) == len(facts.products)
        item = seen[0]
        p = facts.products[str(item["id"])]
        assert (item["title"], item["vendor"], item["variants"][0]["sku"]) == (
            p["title"], p["brand"], p["sku"])
        assert item["product_type"] == p["category"]
        assert [i["src"] for i in item["images"]] == p["image_urls"]
        assert get(server, f"/products/{item['handle']}").text == get(
            server, p["url"][len(server.url):]).text
        assert len(get(server, "/products.json").json()["products"]) == 30
        assert get(server, "/products.json?page=x").status_code == 400


def test_plain_store_has_no_faults(storefront):
    assert storefront.faults_info == {} and storefront.internal_url == ""
    assert get(storefront, "/lookbook").status_code == 404
    assert "lookbook" not in get(storefront, "/").text


def test_faults_can_be_switched_off_one_by_one(tmp_path):
    with DemoShop(SAMPLE_SHOP, faults=Faults(bomb=False, redirect_internal=False,
                                                 hang_seconds=0, slow_delay=0)) as server:
        assert set(server.faults_info) == {"flaky_500", "endless_pagination", "html_as_image",
                                           "tracker"}
        assert server.internal_url == ""


# ---- bad input ----------------------------------------------------------------------------


def test_stop_ends_kept_alive_connections():
    with DemoShop(SAMPLE_SHOP) as server, requests.Session() as session:
        assert session.get(server.url + "/", timeout=10).status_code == 200
        server.stop()
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(server.url + "/", timeout=10)


def test_bad_storefront_folders_are_refused(tmp_path):
    with pytest.raises(InvalidInput, match=r"no products\.json"):
        DemoShop(tmp_path)
    (tmp_path / "products.json").write_text("{not json")
    with pytest.raises(InvalidInput, match="not readable JSON"):
        load_manifest(tmp_path)
    (tmp_path / "products.json").write_text(json.dumps({"format": 99, "products": []}))
    with pytest.raises(InvalidInput, match="unknown manifest format"):
        load_manifest(tmp_path)
    (tmp_path / "products.json").write_text(json.dumps({"format": 1}))
    with pytest.raises(InvalidInput, match="no products list"):
        load_manifest(tmp_path)


def test_a_busy_port_is_a_clear_error(storefront):
    with pytest.raises(InvalidInput, match="cannot listen on"):
        DemoShop(SAMPLE_SHOP, port=storefront.port)


# ---- building stores ----------------------------------------------------------------------


CLASSES = {"Topwear": ("Tshirts",), "Bottomwear": ("Jeans",), "Shoes": ("Casual Shoes",),
           "Bags": ("Handbags",), "Watches": ("Watches",), "Eyewear": ("Sunglasses",),
           "Belts": ("Belts",), "Ties": ("Ties",)}
MASTER = {"Topwear": "Apparel", "Bottomwear": "Apparel", "Shoes": "Footwear"}


@pytest.fixture
def source(tmp_path, make_image) -> Path:
    """A small data set shaped like the shared fashion-products folder."""
    root = tmp_path / "src"
    (root / "images").mkdir(parents=True)
    rows = []
    for c, (sub, (article,)) in enumerate(CLASSES.items()):
        for i in range(8):
            pid = str(10000 + c * 100 + i)
            rows.append({"id": pid, "gender": "Men", "masterCategory": MASTER.get(sub,
                         "Accessories"), "subCategory": sub, "articleType": article,
                         "baseColour": "Blue", "season": "Fall", "year": "2012",
                         "usage": "Casual", "productDisplayName": f"Acme Men {article} {i}"})
            (root / "images" / f"{pid}.jpg").write_bytes(
                make_image((224, 224), (30 * c, 90, 200 - 20 * c), seed=c * 100 + i))
    with (root / "products.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def test_build_sample_store_with_every_trap(source, tmp_path):
    spec = SampleSpec(CLASSES, per_class=6, uncategorised=8, image_size=64, seed=1)
    out = tmp_path / "store"
    manifest = build_shop(source, out, sample=spec)
    fx = manifest["fixtures"]
    assert len(manifest["products"]) == 8 * 7 + 4
    assert len(fx["uncategorised"]) == 8
    assert set(fx) >= {"same_image_url", "same_image_bytes", "near_duplicates",
                       "truncated_image", "missing_image", "malformed_jsonld", "markup",
                       "img_styles"}
    assert not (out / "images" / f"{fx['missing_image']}.jpg").exists()
    with (out / "answers.csv").open() as fh:
        assert {r["id"] for r in csv.DictReader(fh)} == set(fx["uncategorised"])
    from PIL import Image

    with Image.open(out / "images" / manifest["products"][0]["images"][0]) as img:
        assert max(img.size) == 64
    again = build_shop(source, tmp_path / "again", sample=spec)
    assert again == manifest  # fixed seed: the same store every time
    with DemoShop(out) as server:
        facts = server.facts()
        assert len(facts.products) == len(manifest["products"])
        assert get(server, f"/p/{manifest['products'][0]['slug']}").status_code == 200


def test_build_benchmark_store_references_images_without_copying(source, tmp_path):
    out = tmp_path / "big"
    manifest = build_shop(source, out, limit=20)
    assert len(manifest["products"]) == 20 and not (out / "images").exists()
    assert manifest["image_root"] == str((source / "images").resolve())
    assert not (out / "answers.csv").exists()
    with DemoShop(out) as server:
        p = manifest["products"][0]
        body = get(server, f"/images/{p['images'][0]}").content
        assert body == (source / "images" / f"{p['id']}.jpg").read_bytes()
        assert "Apparel > Topwear > Tshirts" in server.facts().category_counts


def test_build_refuses_bad_sources(source, tmp_path):
    with pytest.raises(InvalidInput, match=r"no products\.csv"):
        build_shop(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(InvalidInput, match="only 8 products of Topwear"):
        build_shop(source, tmp_path / "out", sample=SampleSpec(CLASSES, per_class=20))
    with pytest.raises(InvalidInput, match="somewhere else than its source"):
        build_shop(source, source, sample=SampleSpec(CLASSES, per_class=2))
    assert len(list((source / "images").iterdir())) == 64  # nothing deleted
    with pytest.raises(InvalidInput, match="limit must be at least 1"):
        build_shop(source, tmp_path / "out", limit=0)
    no_images = tmp_path / "no-images"
    no_images.mkdir()
    (no_images / "products.csv").write_bytes((source / "products.csv").read_bytes())
    with pytest.raises(InvalidInput, match="no products with images"):
        build_shop(no_images, tmp_path / "out")
    (source / "products.csv").write_text("id,name\n1,x\n")
    with pytest.raises(InvalidInput, match="lacks columns"):
        build_shop(source, tmp_path / "out")


# ---- the CLI ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_store_serve_command_serves_until_interrupted(tmp_path, stop):
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "slashcat"), "--home", str(tmp_path), "store",
         "serve", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"})
    try:
        line = proc.stdout.readline()
        count = len(load_manifest(SAMPLE_SHOP)["products"])
        assert f"http://127.0.0.1:{port}/" in line and f"{count} products" in line
        home = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert home.status_code == 200 and "Slashcat Demo Fashion" in home.text
    finally:
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Stopped; 1 requests served." in out


def test_store_serve_refuses_a_folder_without_manifest(cli, tmp_path):
    result = cli("store", "serve", "--port", "0", "--products", str(tmp_path))
    assert result.exit_code == 1
    assert "is not a storefront folder" in result.output
    assert "Traceback" not in result.output
