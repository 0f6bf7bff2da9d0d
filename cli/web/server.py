"""Bind a listening socket and run the app with uvicorn."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any


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
