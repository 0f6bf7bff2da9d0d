"""Extraction on saved pages of real shops: slashcat beside `extruct` alone, per field.

    .venv/bin/python bench/extract_real.py [--data DIR] [--verbose] [--demoshop N] [--repeats N]

Reads ../shared/datasets/real-pages (24 product pages with the title, main image and price
element a person marked; 15 listing pages with their pagination selectors in pages.csv) and
prints how often each field is right for slashcat's extraction (`scraper.extract.extract_page`)
and for the baseline a user would try first: `extruct` (json-ld, microdata, opengraph) taking
the first Product node and filling its gaps from OpenGraph. The matching rules are printed
with the figures; they are strict on purpose (a wrong value counts as wrong, not as missing).
"""

from __future__ import annotations

import argparse
import csv
import html as htmllib
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "real-pages"

RULES = """\
Matching rules
  product found : a product with a title and at least one image
  title         : normalised text (casefold, entities, cp1252 C1 bytes, punctuation but
                  & ® ™ $ . / - as spaces, whitespace) equal to the marked element's text, or
                  one contained in the other on word boundaries where the shorter is >= 1/3
                  of the longer or >= 3 words; never the shop-name segment of the <title>
                  ("... | Nordstrom")
  main image    : the FIRST image is the marked picture: a URL in the marked element's
                  attributes (src, data-*, srcset) with the same (folder, file stem) once host,
                  query, extension and size tokens (_SX522_, s-l300, 600x450, c700x420q10, _600)
                  are dropped (an image path inside the query is used as the path); a distinctive
                  stem (>= 12 chars with a digit) may sit in another folder or behind an SEO name
  price         : numeric equality (0.005) with price-parser's amount of the marked element's
                  text (spaced or joined: "$<b>339</b><sup>.99</sup>"), or its own content=""
  SKU           : equal (case-insensitive) to one of the identifiers the page shows with a
                  label or markup (marked by hand below, 'where markable'); pages without one
                  are not counted
  next page     : the extractor's next-page URL equals the href under pages.csv's
                  next_selector (fragment dropped); on pages without one, none is right
  listing not a product : a listing page must give no product (all right = 0 false products)"""

# Identifiers each page shows (label "Model #", "Item number", itemprop=sku, ...), marked by
# hand from the saved pages; any one of them is a right SKU. Pages showing none are skipped.
SKUS: dict[str, set[str]] = {
    "barnes&noble": {"9780393609394"},  # ISBN-13: ...
    "crutchfield": {"333ORAK", "PF723400"},  # Item # ... | MFR # ... (itemprop sku/mpn)
    "dhgate": {"120629211"},  # Item Code: ...
    "ebay": {"390985762669", "EC-06C"},  # item number: ..., itemprop=mpn
    "godiva": {"190751"},  # item # ... (itemprop=productID)
    "groupon": {"59929003"},  # itemprop=sku
    "home_depot": {"6202-22-00", "202286744", "862425", "0077680119940"},  # Model/Internet/SKU
    "microsoft": {"088M"},  # itemprop=sku
    "newegg": {"N82E16819117726", "BX80677I77700K"},  # Item#: ..., Model
    "nordstrom": {"4608472", "98837511"},  # itemprop=productID, first itemprop=sku
    "ostrichpillow": {"6K-FQWD-EIC3"},  # the Shopify product JSON's first variant
    "overstock": {"BFP-BLU"},  # itemprop=mpn
    "target": {"52062126", "042666033084"},  # TCIN (itemprop=sku), UPC
    "uniqlo": {"151947"},  # SKU# ... (itemprop=productID)
}

TITLE_SEPARATORS = re.compile(r"\s+[|:–—-]\s+|\s+at\s+")
FILE_IN_QUERY = re.compile(r"/[^\[\]?&=,]+\.(?:jpe?g|png|gif|webp)", re.I)
SIZE_TOKENS = [
    re.compile(r"^[a-z]?\d{2,4}x\d{2,4}(q\d+)?$"),  # groupon c700x420q10, t440x300
    re.compile(r"\._[^./]*_(?=\.|$)"),  # amazon ._SX522_
    re.compile(r"(^|[_-])s-l\d+$"),  # ebay s-l300
    re.compile(r"[_-]?\d{2,4}x\d{0,4}n?(?=[._-]|$)", re.I),  # 600x450, 570xN
    re.compile(r"[_-]\d{2,4}$"),  # _600
    re.compile(r"^il_"),
]
URL_IN_ATTR = re.compile(r"(?:https?:)?//[^\s\"',]+|/[^\s\"',]+\.(?:jpe?g|png|gif|webp)[^\s\"',]*",
                         re.I)


def norm_text(text: str | None) -> str:
    text = htmllib.unescape(text or "")
    # Some saved pages carry cp1252 bytes as C1 controls ("\x99" for the trade mark sign).
    text = "".join(bytes([ord(c)]).decode("cp1252", "replace") if 0x80 <= ord(c) <= 0x9F
                   else c for c in text).casefold()
    return " ".join(re.sub(r"[^\w&®™$./-]+", " ", text).split()).strip(" .,:;-|–—")


def title_right(got: str | None, expected: str, shop: str) -> bool:
    a, b = norm_text(got), norm_text(expected)
    if not a or not b:
        return False
    if a == b:
        return True
    shop_key = re.sub(r"[^a-z0-9]", "", shop.lower())
    bare = re.sub(r"[^a-z0-9]", "", a)
    if len(shop_key) >= 4 and bare.startswith(shop_key) and len(bare) - len(shop_key) <= 6:
        return False  # the shop name alone ("Science Bob Store") is not the product's title
    short, long_ = sorted((a, b), key=len)
    inside = re.search(r"(^|\W)" + re.escape(short) + r"($|\W)", long_) is not None
    return inside and (len(short) * 3 >= len(long_) or len(short.split()) >= 3)


def image_key(url: str) -> tuple[str, str]:
    """(parent folder, file stem) of an image URL with size variants removed."""
    parts = urlsplit(htmllib.unescape(url).strip())
    path = unquote(parts.path)
    inner = FILE_IN_QUERY.search(unquote(parts.query))  # lp.hm.com/hmprod?set=source[/a/b.jpg]
    if inner:
        path = inner.group(0)
    segments = []
    for seg in re.sub(r"\s+", "", path.lower()).split("/"):
        stem = re.sub(r"\.(jpe?g|png|gif|webp|tiff?)$", "", seg)
        for token in SIZE_TOKENS:
            stem = token.sub("", stem)
        if stem and not (stem.isdigit() and len(stem) <= 4):
            segments.append(stem)
    segments = segments or [""]
    return (segments[-2] if len(segments) > 1 else "", segments[-1])


def same_image(got: str, expected: set[tuple[str, str]]) -> bool:
    parent, stem = image_key(got)
    for e_parent, e_stem in expected:
        distinctive = len(stem) >= 12 and any(c.isdigit() for c in stem)
        if stem == e_stem and (parent == e_parent or distinctive):
            return True
        short, long_ = sorted((stem, e_stem), key=len)
        if len(short) >= 12 and any(c.isdigit() for c in short) and long_.endswith("-" + short):
            return True  # an SEO name in front of the same asset id
    return False


def expected_image_keys(element: Any) -> set[tuple[str, str]]:
    urls: list[str] = []
    for name, value in element.attrib.items():
        value = value.strip()
        if name in {"alt", "title", "class", "style"} or not value:
            continue
        if "srcset" in name:
            urls += [c.split()[0] for c in value.split(",") if c.split()]
        elif value.startswith(("http", "//", "/")):
            urls.append(value)
        else:
            urls += URL_IN_ATTR.findall(value)
    return {image_key(u) for u in urls}


def price_amounts(element: Any) -> set[float]:
    from price_parser import Price

    texts = [" ".join(element.itertext()), "".join(element.itertext())]
    out = {float(p.amount) for t in texts if (p := Price.fromstring(t)).amount is not None}
    content = element.get("content")
    if content:
        amount = Price.fromstring(content).amount
        if amount:
            out.add(float(amount))
    return out


def price_right(got: float | None, expected: set[float]) -> bool:
    return got is not None and any(abs(got - e) < 0.005 for e in expected)


def first_element(path: Path) -> Any:
    import lxml.html

    frag = lxml.html.fragment_fromstring(path.read_bytes().decode("utf-8", "replace"),
                                         create_parent="div")
    return frag[0] if len(frag) else frag


@dataclass
class Answer:
    found: bool = False
    title: str | None = None
    image: str | None = None
    price: float | None = None
    sku: str | None = None
    seconds: float = 0.0


@dataclass
class Tally:
    right: dict[str, int] = field(default_factory=dict)
    counted: dict[str, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    misses: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, ok: bool, page: str) -> None:
        self.counted[name] = self.counted.get(name, 0) + 1
        self.right[name] = self.right.get(name, 0) + int(ok)
        if not ok:
            self.misses.setdefault(name, []).append(page)

    def figure(self, name: str) -> str:
        n = self.counted.get(name, 0)
        return f"{self.right.get(name, 0):>3}/{n:<3} {100 * self.right.get(name, 0) / n:5.1f}%" \
            if n else "      -     "


# --------------------------------------------------------------------------- the two readers


def slashcat_answer(body: bytes, url: str) -> Answer:
    from scraper.extract import extract_page

    started = time.process_time()
    page = extract_page(body, url)
    took = time.process_time() - started
    product = page.product
    if product is None:
        return Answer(seconds=took)
    return Answer(
        found=bool(product.title and product.image_urls), title=product.title,
        image=product.image_urls[0] if product.image_urls else None, price=product.price,
        sku=product.external_id, seconds=took,
    )


def first(value: Any) -> Any:
    while isinstance(value, list):
        value = value[0] if value else None
    return value


def plain(value: Any) -> str | None:
    value = first(value)
    if isinstance(value, dict):
        value = value.get("url") or value.get("contentUrl") or value.get("name") or value.get(
            "@id")
    return str(value).strip() if value not in (None, "") else None


def extruct_answer(body: bytes, url: str) -> Answer:
    import extruct
    from price_parser import Price

    started = time.process_time()
    try:
        data = extruct.extract(body, base_url=url, syntaxes=["json-ld", "microdata", "opengraph"],
                               uniform=True, errors="ignore")
    except Exception:  # extruct fails on some pages outright: that is part of the baseline
        return Answer(seconds=time.process_time() - started)
    took = time.process_time() - started
    product: dict[str, Any] = {}
    for syntax in ("json-ld", "microdata"):
        for node in data.get(syntax) or []:
            types = node.get("@type")
            types = types if isinstance(types, list) else [types]
            if any(str(t).rsplit("/", 1)[-1] in {"Product", "ProductGroup"} for t in types):
                product = node
                break
        if product:
            break
    og: dict[str, Any] = (data.get("opengraph") or [{}])[0]
    offers = first(product.get("offers")) or {}
    offers = offers if isinstance(offers, dict) else {}
    price_text = plain(offers.get("price") or offers.get("lowPrice")) or plain(
        og.get("product:price:amount") or og.get("og:price:amount"))
    amount = Price.fromstring(price_text).amount if price_text else None
    title = plain(product.get("name")) or plain(og.get("og:title"))
    image = plain(product.get("image")) or plain(og.get("og:image"))
    sku = next((plain(product.get(k)) for k in ("sku", "mpn", "productID", "gtin13", "gtin")
                if plain(product.get(k))), None)
    return Answer(found=bool(title and image), title=title,
                  image=urljoin(url, image) if image else None,
                  price=float(amount) if amount is not None else None, sku=sku, seconds=took)


# --------------------------------------------------------------------------- product pages


def score_products(data: Path, readers: dict[str, Callable[[bytes, str], Answer]],
                   tallies: dict[str, Tally], verbose: bool, repeats: int = 1) -> int:
    shops = sorted(p for p in (data / "product-pages").iterdir() if p.is_dir())
    for shop in shops:
        body = (shop / "source.html").read_bytes()
        url = f"https://www.{re.sub(r'[^a-z0-9]', '', shop.name.lower())}.com/"
        title = first_element(shop / "expected-title.html").text_content()
        images = expected_image_keys(first_element(shop / "expected-image.html"))
        prices = price_amounts(first_element(shop / "expected-price.html"))
        for name, reader in readers.items():
            got = reader(body, url)
            # CPU: the fastest of `repeats` runs, so a loaded machine skews the figure less
            seconds = min([got.seconds] + [reader(body, url).seconds for _ in range(repeats - 1)])
            tally = tallies[name]
            tally.seconds.append(seconds)
            tally.add("product found", got.found, shop.name)
            tally.add("title", title_right(got.title, title, shop.name), shop.name)
            tally.add("main image first", bool(got.image) and same_image(got.image, images),
                      shop.name)
            tally.add("price", price_right(got.price, prices), shop.name)
            if shop.name in SKUS:
                tally.add("SKU", (got.sku or "").strip().upper() in SKUS[shop.name], shop.name)
            if verbose:
                print(f"{shop.name:18} {name:9} title={got.title!r:.60} image={got.image!r:.90}"
                      f" price={got.price} sku={got.sku}")
                if name == "slashcat":
                    print(f"{'':18} expected  title={norm_text(title)!r:.60} keys={images}"
                          f" price={prices} sku={SKUS.get(shop.name)}")
    return len(shops)


# --------------------------------------------------------------------------- listing pages


def expected_next(doc: Any, selector: str, base: str) -> str | None:
    if not selector:
        return None
    for element in doc.cssselect(selector):
        anchor = element if element.tag == "a" else next(iter(element.iter("a")), None)
        if anchor is None:
            continue
        href = (anchor.get("href") or "").strip()
        if not href or href.startswith(("javascript:", "#")):  # the URL sits in data-href
            href = (anchor.get("data-href") or anchor.get("data-url") or "").strip()
        if href:
            return urldefrag(urljoin(base, href))[0]
    return None


def score_listings(data: Path, tally: Tally, verbose: bool) -> int:
    import lxml.html

    from scraper.extract import extract_page, parse_document

    rows = list(csv.DictReader((data / "listing-pages" / "pages.csv").open(encoding="utf-8")))
    for row in rows:
        body = (data / "listing-pages" / row["file"]).read_bytes()
        text = body.decode(row["encoding"] or "utf-8", "replace")
        doc = lxml.html.document_fromstring(text)
        want = expected_next(doc, row["next_selector"], row["url"])
        started = time.process_time()
        page = extract_page(parse_document(body), row["url"])
        tally.seconds.append(time.process_time() - started)
        got = page.links.next_page if hasattr(page.links, "next_page") else None
        tally.add("next page", got == want, row["file"])
        tally.add("listing not a product", page.product is None, row["file"])
        if verbose:
            print(f"{row['file']:8} next={got!r:.100}\n{'':8} want={want!r:.100}")
    return len(rows)


def demoshop_cpu(products: int) -> tuple[float, float]:
    """(median CPU ms/page of extract_page, share of pages with a product) on the local demo
    shop's product pages (JSON-LD or microdata), rendered in-process from the fashion photos'
    products.csv."""
    import tempfile

    from scraper.demoshop import build_shop
    from scraper.demoshop.pages import ShopPages
    from scraper.extract import extract_page

    source = ROOT.parent / "shared" / "datasets" / "fashion-products"
    with tempfile.TemporaryDirectory(prefix="slashcat-extract-") as work:
        manifest = build_shop(source, Path(work) / "store", limit=products)
        shop = ShopPages(Path(work) / "store", manifest, "http://127.0.0.1:8000")
        seconds, found = [], 0
        for p in shop.products:
            url = shop.base + shop.product_url(p)
            body = shop.product_page(p).encode()
            started = time.process_time()
            page = extract_page(body, url)
            seconds.append(time.process_time() - started)
            found += page.product is not None
    return 1000 * statistics.median(seconds), found / len(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--demoshop", type=int, default=300, metavar="N",
                        help="also time extraction on N product pages of the local demo shop "
                             "(0: skip)")
    parser.add_argument("--repeats", type=int, default=3, metavar="N",
                        help="time each product page N times and keep the fastest (CPU figures)")
    args = parser.parse_args()
    readers = {"slashcat": slashcat_answer, "extruct": extruct_answer}
    tallies = {name: Tally() for name in readers}
    pages = score_products(args.data, readers, tallies, args.verbose, max(1, args.repeats))
    listing = Tally()
    listings = score_listings(args.data, listing, args.verbose)
    print(RULES)
    print(f"\nProduct pages: {pages}")
    print(f"{'field':22} {'slashcat':>14}   {'extruct':>14}")
    for name in ("product found", "title", "main image first", "price", "SKU"):
        print(f"{name:22} {tallies['slashcat'].figure(name):>14}   "
              f"{tallies['extruct'].figure(name):>14}")
    print(f"{'CPU ms/page (median)':22} "
          f"{1000 * statistics.median(tallies['slashcat'].seconds):>14.1f}   "
          f"{1000 * statistics.median(tallies['extruct'].seconds):>14.1f}")
    print(f"{'CPU ms/page (mean)':22} "
          f"{1000 * statistics.mean(tallies['slashcat'].seconds):>14.1f}   "
          f"{1000 * statistics.mean(tallies['extruct'].seconds):>14.1f}")
    print(f"\nListing pages: {listings} (slashcat only; extruct reads no links)")
    for name in ("next page", "listing not a product"):
        print(f"{name:22} {listing.figure(name):>14}")
    print(f"{'CPU ms/page (median)':22} {1000 * statistics.median(listing.seconds):>14.1f}")
    if args.demoshop:
        ms, share = demoshop_cpu(args.demoshop)
        print(f"\nDemo shop product pages: {args.demoshop} (structured data complete)")
        print(f"{'CPU ms/page (median)':22} {ms:>14.2f}   product found {100 * share:.1f}%")
    print("\nslashcat misses:")
    for name, pages_missed in {**tallies["slashcat"].misses, **listing.misses}.items():
        print(f"  {name}: {', '.join(pages_missed)}")


if __name__ == "__main__":
    main()
