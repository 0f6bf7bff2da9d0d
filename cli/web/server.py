"""Bind a listening socket and run the app with uvicorn (in the foreground or in a thread)."""

from __future__ import annotations

import ipaddress
import socket
import threading
from dataclasses import dataclass
from typing import Any

from catalog.errors import InvalidInput
from scraper.net import listen, serve_in_thread


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def uvicorn_server(app: Any, log_level: str = "info", access_log: bool = True) -> Any:
    import uvicorn

    config = uvicorn.Config(
        app, log_level=log_level, access_log=access_log, lifespan="on",
        timeout_graceful_shutdown=5, server_header=False,
    )
    return uvicorn.Server(config)


def run(app: Any, sock: socket.socket, log_level: str = "info") -> None:
    """Serve until Ctrl+C (uvicorn handles the signal and shuts down gracefully)."""
    uvicorn_server(app, log_level).run(sockets=[sock])


@dataclass
class Running:
    """A server running in a background thread (tests and the benchmark)."""

    url: str
    server: Any
    thread: threading.Thread
    sock: socket.socket

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start_in_thread(app: Any, host: str = "127.0.0.1", timeout: float = 60.0) -> Running:
    """Start uvicorn on a free port in a daemon thread; returns once it is serving (warm)."""
    sock = listen(host, 0)
    server = uvicorn_server(app, log_level="warning", access_log=False)
    try:
        thread = serve_in_thread(server, [sock], "slashcat-web", timeout)
    except InvalidInput:
        sock.close()
        raise
    return Running(url_of(sock), server, thread, sock)
