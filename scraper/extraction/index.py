"""Whole-page scans that several readers need, done once per page: the itemprop and itemscope
elements (price, ids, brand, availability, microdata), and the body's classed elements (the
visible price, the breadcrumb). Each reader used to scan the whole page again."""

from __future__ import annotations

from typing import Any


class PageIndex:
    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.itemprops: dict[str, list[Any]] = {}
        self.itemscopes: list[Any] = []
        for element in doc.xpath("//*[@itemprop or @itemscope]"):
            if element.get("itemscope") is not None:
                self.itemscopes.append(element)
            for prop in (element.get("itemprop") or "").split():
                self.itemprops.setdefault(prop, []).append(element)
        self._classed: list[tuple[Any, str]] | None = None

    def classed(self) -> list[tuple[Any, str]]:
        """(element, "class id aria-label") for the body's elements that have any of them, and
        every <h1> (marks "" when bare), in document order."""
        if self._classed is None:
            self._classed = [
                (e, " ".join(e.get(a) or "" for a in ("class", "id", "aria-label")).strip())
                for e in self.doc.xpath("//body//*[@class or @id or @aria-label] | //body//h1")]
        return self._classed


_last: PageIndex | None = None


def page_index(doc: Any) -> PageIndex:
    """The index of the page being read. The last page's is kept: extraction reads one page at
    a time, and swapping one reference is atomic."""
    global _last
    last = _last
    if last is not None and last.doc is doc:
        return last
    _last = last = PageIndex(doc)
    return last


def marked(doc: Any, prop: str) -> list[Any]:
    """The elements with itemprop `prop`, in document order."""
    return page_index(doc).itemprops.get(prop, [])
