"""Page bytes to text when the page may lie about its encoding.

Order: a byte-order mark; the declared charset when the bytes decode with it strictly (unless
it is a single-byte Latin charset and the bytes are really UTF-8 or a CJK multibyte
encoding); UTF-8; then charset-normalizer's guess when it is a multibyte encoding; cp1252 last
(a Latin page's most likely encoding), with replacement characters rather than a crash.
"""

from __future__ import annotations

import codecs
import re

DECLARED = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([\w.:-]{2,40})""", re.I)
XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>")
SINGLE_BYTE = {"latin_1", "iso8859_1", "cp1252", "ascii", "iso8859_15", "cp1250", "iso8859_2"}
MULTIBYTE = {"cp932", "shift_jis", "shift_jis_2004", "shift_jisx0213", "euc_jp", "gb18030",
             "gbk", "gb2312", "big5", "big5hkscs", "euc_kr", "cp949", "iso2022_jp"}
LANG = re.compile(rb"""<html[^>]{0,300}?\blang\s*=\s*["']?([a-z]{2})""", re.I)
BY_LANG = {"ja": ("cp932", "euc_jp", "iso2022_jp"), "ko": ("cp949", "euc_kr"),
           "zh": ("gb18030", "big5")}
BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))


def codec_name(label: str) -> str | None:
    try:
        return codecs.lookup(label).name.replace("-", "_")
    except LookupError:
        return None


def strict(body: bytes, encoding: str) -> str | None:
    try:
        return body.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def guessed_multibyte(body: bytes) -> str | None:
    """A CJK multibyte encoding: the one the page's <html lang> implies if the bytes decode
    with it, else charset-normalizer's multibyte guess (its single-byte guesses confuse cp1252
    with cp1250, so those are not trusted; without lang, Japanese and Korean can be confused)."""
    lang = LANG.search(body[:4096])
    for encoding in BY_LANG.get(lang.group(1).decode().lower() if lang else "", ()):
        if strict(body, encoding) is not None:
            return encoding
    from charset_normalizer import from_bytes

    for match in from_bytes(body[:200_000]):
        name = codec_name(match.encoding)
        if name in MULTIBYTE:
            return name
    return None


def decode_html(body: bytes) -> str:
    """The page's text; never raises."""
    for bom, encoding in BOMS:
        if body.startswith(bom):
            return body.decode(encoding, "replace")
    found = DECLARED.search(body[:4096])
    declared = codec_name(found.group(1).decode("ascii", "ignore")) if found else None
    if declared and declared not in SINGLE_BYTE:
        text = strict(body, declared)
        if text is not None:
            return text
    if not body.isascii():
        text = strict(body, "utf-8")
        if text is not None:
            return text
        guess = guessed_multibyte(body)
        if guess:
            return body.decode(guess, "replace")
    return body.decode(declared if declared in SINGLE_BYTE else "cp1252", "replace")


def without_xml_declaration(text: str) -> str:
    """lxml refuses str input that still carries an <?xml encoding=...?> declaration."""
    return XML_DECLARATION.sub("", text, count=1)
