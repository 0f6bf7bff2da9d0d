"""Downloader middlewares and the DNS resolver of the crawl (imported only when crawling)."""

from __future__ import annotations

import asyncio
from typing import Any

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.exceptions import IgnoreRequest
from scrapy.resolver import CachingThreadedResolver
from twisted.internet import defer
from twisted.internet.error import DNSLookupError

from scraper.net import AddressPolicy, active_policy

BLOCKED = "slashcat_blocked"  # request.meta key set when the guard refused a request


class AddressRefused(IgnoreRequest):
    """The address guard refused a request (its host is internal)."""


class AddressGuardMiddleware:
    """Refuse requests (links, redirects, images) to internal addresses; see scraper.net."""

    def __init__(self, crawler: Crawler, policy: AddressPolicy) -> None:
        self.crawler = crawler
        self.policy = policy

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> AddressGuardMiddleware:
        s = crawler.settings
        policy = AddressPolicy(s.get("SLASHCAT_START_URL"), s.getdict("SLASHCAT_PINNED_HOSTS"))
        guard = cls(crawler, policy)
        # Decide when a request is scheduled too (where the off-site filter also looks), so
        # a refused redirect is counted as the guard's, not silently dropped as off-site.
        crawler.signals.connect(guard.request_scheduled, signal=signals.request_scheduled)
        return guard

    def request_scheduled(self, request: Request, spider: Any = None) -> None:
        self.process_request(request)

    def process_request(self, request: Request) -> None:
        reason = self.policy.refusal(request.url)
        if reason is None:
            return
        request.meta[BLOCKED] = reason
        report = getattr(self.crawler.spider, "report", None)
        if report is not None:
            report.refused(request.url)
        raise AddressRefused(f"blocked-address: {reason}")


class RetryBackoffMiddleware:
    """Wait before a retried request goes out: base * 2**(n-1) seconds, capped.

    Scrapy's RetryMiddleware re-schedules at once; a server that is failing (5xx) or slow
    (timeouts) gets time to recover instead.
    """

    def __init__(self, base: float, cap: float) -> None:
        self.base = base
        self.cap = cap

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryBackoffMiddleware:
        s = crawler.settings
        return cls(s.getfloat("SLASHCAT_RETRY_BACKOFF"), s.getfloat("SLASHCAT_RETRY_BACKOFF_MAX"))

    async def process_request(self, request: Request) -> None:
        tries = int(request.meta.get("retry_times", 0))
        if tries > 0 and self.base > 0:
            await asyncio.sleep(min(self.cap, self.base * 2 ** (tries - 1)))


class GuardedResolver(CachingThreadedResolver):
    """Scrapy's caching resolver, plus pinned hosts and the guard's check at connect time.

    The middleware decides on the URL; this catches a host whose DNS answer changed between
    that check and the connection (DNS rebinding).
    """

    def getHostByName(self, name: str, timeout: Any = ()) -> Any:  # Twisted API name
        policy = active_policy()
        if policy is not None and name.lower() in policy.pinned:
            return defer.succeed(policy.pinned[name.lower()])
        d = super().getHostByName(name, timeout)
        d.addCallback(self._check, name)
        return d

    @staticmethod
    def _check(address: str, name: str) -> str:
        policy = active_policy()
        if policy is not None and not policy.address_allowed(name, address):
            raise DNSLookupError(f"{name} resolved to an internal address ({address})")
        return address
