"""Errors of the scraper. All derive from catalog.errors.SlashcatError."""

from __future__ import annotations

from catalog.errors import SlashcatError


class ScraperError(SlashcatError):
    """Something went wrong while crawling."""


class BadStartUrl(ScraperError):
    """The URL to crawl is not an http(s) URL with a host."""


class CrawlFailed(ScraperError):
    """The crawl could not run to its end (the reason is in the message)."""



class CatalogLost(CrawlFailed):
    """The catalog's database server stayed out of reach: the crawl stops, to be resumed."""
