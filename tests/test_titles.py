"""Title cleaning: every kind of bad title works or is cleanly ignored."""

from __future__ import annotations

import os
import random

import pytest

from classifier.titles import MAX_CHARS, clean_title, model_text, with_brand


@pytest.mark.parametrize("raw", [None, "", "   ", "\t\n \u00a0 \r\n", b"", "<br/>", "&nbsp;"])
def test_empty_and_whitespace_only_are_no_title(raw: str | bytes | None) -> None:
    assert clean_title(raw) is None
    assert model_text(raw) == ""


def test_plain_title_is_kept_as_one_line() -> None:
    assert clean_title("  Nike Men\n Blue   Running\tShoes ") == "Nike Men Blue Running Shoes"


def test_ten_kilobytes_is_cut_at_a_word_boundary() -> None:
    raw = "Tan Leather Belt " * 600  # 10.2 kB
    assert len(raw) > 10_000
    out = clean_title(raw)
    assert out is not None
    assert len(out) <= MAX_CHARS
    assert out.startswith("Tan Leather Belt Tan")
    assert out.endswith(("Tan", "Leather", "Belt"))


def test_ten_megabytes_is_read_only_as_far_as_needed() -> None:
    out = clean_title("x" * 10_000_000)
    assert out == "x" * MAX_CHARS


def test_binary_garbage_is_ignored() -> None:
    rng = random.Random(7)
    junk = bytes(rng.randrange(256) for _ in range(2000))
    assert clean_title(junk) is None
    assert clean_title(os.urandom(0) + b"\x00\x01\x02\xff\xfe\x03\x04") is None
    assert clean_title("\x00\x07\x1b[31m") is None


def test_a_few_control_characters_are_dropped_not_the_title() -> None:
    assert clean_title("Blue\x00 Shirt\x07 for men") == "Blue Shirt for men"
    assert clean_title(b"Blue Shirt\xff") == "Blue Shirt"


def test_html_entities_and_tags() -> None:
    assert clean_title("Tom &amp; Jerry&#39;s <b>Kids</b>&nbsp;T-shirt") == (
        "Tom & Jerry's Kids T-shirt"
    )
    assert clean_title("Belt &amp;lt;i&amp;gt;new&amp;lt;/i&amp;gt;") == "Belt new"
    assert clean_title("Size <10 and >5 cm") == "Size <10 and >5 cm"  # not a tag


def test_emoji_survive() -> None:
    assert clean_title("Nike 👟 Running Shoes 🔥") == "Nike 👟 Running Shoes 🔥"
    family = "Family 👨\u200d👩\u200d👧 T-shirt"  # the joiners make one emoji
    assert clean_title(family) == family
    assert clean_title("🔥🔥🔥") is None  # no letters or digits: nothing to read


def test_arabic_right_to_left() -> None:
    assert clean_title("  عباية   سوداء ") == "عباية سوداء"
    # bidi marks are invisible formatting: dropped, the words kept in logical order
    assert clean_title("\u200fقميص رجال أزرق\u200f") == "قميص رجال أزرق"
    # presentation forms (as some PDFs and old sites emit them) become plain letters
    assert clean_title("\ufee3\ufeae\ufea3\ufe92\ufe8e") == "مرحبا"
    assert model_text("قميص Blue") == "قميص blue"


def test_unicode_forms_are_unified() -> None:
    assert clean_title("ＮＩＫＥ\u00a0Shoes") == "NIKE Shoes"
    assert model_text("ÉTÉ Straße") == "été strasse"


def test_brand_joins_the_title_once() -> None:
    assert with_brand("Men Blue Running Shoes", "Nike") == "Nike Men Blue Running Shoes"
    assert with_brand("Nike Men Blue Running Shoes", "NIKE") == "Nike Men Blue Running Shoes"
    assert with_brand(None, " Puma ") == "Puma"
    assert with_brand("Tan Belt", "   ") == "Tan Belt"
    assert with_brand(None, None) is None
