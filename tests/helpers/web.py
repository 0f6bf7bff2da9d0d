"""Fixtures of the web tests: a tiny catalog with a real model, and the app on a free port.

The model is trained once per session through the classifier's library API (3 classes of
coloured shapes, the small 'seed' network, 32 px, 1 epoch: seconds, not minutes). Servers are
uvicorn in a background thread of the test process, on 127.0.0.1 with a port the OS picked.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from catalog.db import Catalog, open_catalog
from catalog.settings import Settings

from helpers import copy_home
from helpers.classifier import shape_image

WEB_SHAPES = {
    "Toys > Ball": ("circle", (220, 40, 40)),
    "Home > Box": ("square", (40, 170, 60)),
    "Home > Triangle": ("triangle", (40, 70, 220)),
}
PER_CLASS = 16
MODEL_SIZE = 32
# Small caps so the over-cap cases stay quick; the file cap is over Starlette's 1 MiB spool
# threshold so the no-disk test means something.
MAX_FILE = 2 * 1024 * 1024
MAX_FILES = 4
MAX_BODY = 5 * 1024 * 1024


def shape_png(shape: str, colour: tuple[int, int, int], seed: int, size: int = 48,
              fmt: str = "PNG") -> bytes:
    """The classifier fixtures' shape image, at the web tests' size."""
    return shape_image(shape, colour, seed, size, fmt)


def noise_png(side: int, seed: int = 0) -> bytes:
    """An incompressible PNG of about 3 * side**2 bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def build_web_catalog(catalog: Catalog) -> None:
    from catalog.ingest import get_or_create_store, ingest_image, link_image, upsert_product
    from catalog.labels import set_store_label

    seed = 0
    with catalog.session() as session:
        store = get_or_create_store(session, "shapes", "http://shapes.test/")
        for category, (shape, colour) in WEB_SHAPES.items():
            for i in range(PER_CLASS):
                seed += 1
                url = f"http://shapes.test/{shape}/{i}"
                product, _ = upsert_product(session, store.id, url, title=url,
                                            category_path=category)
                image = ingest_image(session, catalog.store,
                                     shape_png(shape, colour, seed)).image
                link_image(session, product.id, image.id, url + ".png")
                set_store_label(session, product, category)


@dataclass
class WebModel:
    home: Path
    version: str
    classes: list[str]


@pytest.fixture(scope="session")
def web_model(tmp_path_factory: pytest.TempPathFactory) -> WebModel:
    """A home folder with a tiny shapes catalog and one trained, active model."""
    from classifier.train import TrainConfig, train

    home = tmp_path_factory.mktemp("web") / "home"
    cat = open_catalog(Settings.load(home=home, env={}))
    try:
        build_web_catalog(cat)
        result = train(cat, TrainConfig(image_size=MODEL_SIZE, arch="seed", epochs=1,
                                        batch_size=16, seed=1, min_per_class=8, patience=1,
                                        augment=False))
    finally:
        cat.close()
    return WebModel(home, result.version, list(result.classes))


@dataclass
class Served:
    url: str
    catalog: Catalog
    model: WebModel
    classifier: Any  # the loaded classifier.predict.Classifier the app serves


@dataclass
class Running:
    """The app served by uvicorn in a background thread."""

    url: str
    server: Any
    thread: threading.Thread
    sock: Any

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()


def start_in_thread(app: Any, host: str = "127.0.0.1", timeout: float = 60.0) -> Running:
    """Start uvicorn on a free port in a daemon thread; returns once it is serving (warm)."""
    from catalog.errors import InvalidInput
    from cli.web.server import url_of, uvicorn_server
    from scraper.net import listen, serve_in_thread

    sock = listen(host, 0)
    server = uvicorn_server(app, log_level="warning", access_log=False)
    try:
        thread = serve_in_thread(server, [sock], "slashcat-web", timeout)
    except InvalidInput:
        sock.close()
        raise
    return Running(url_of(sock), server, thread, sock)


def _serve(home: Path, model: WebModel, allow_save: bool) -> Iterator[Served]:
    from classifier.predict import Classifier
    from cli.web.app import WebConfig, create_app
    from cli.web.uploads import UploadLimits

    cat = open_catalog(Settings.load(home=home, env={}))
    running = None
    try:
        clf = Classifier.load(cat)
        app = create_app(cat, clf, WebConfig(
            limits=UploadLimits(max_file_bytes=MAX_FILE, max_files=MAX_FILES,
                                max_body_bytes=MAX_BODY),
            allow_save=allow_save,
        ))
        running = start_in_thread(app)
        yield Served(running.url, cat, model, clf)
    finally:
        if running is not None:
            running.stop()
        cat.close()


@pytest.fixture(scope="session")
def web_server(web_model: WebModel, cli_server_started: CliServer) -> Iterator[Served]:
    """The app (saving off) over real HTTP, shared by the read-only tests. (It asks for the CLI
    server only to launch that early.)"""
    yield from _serve(web_model.home, web_model, allow_save=False)


@pytest.fixture
def save_server(web_model: WebModel, tmp_path: Path) -> Iterator[Served]:
    """The app with --allow-save on a private copy of the catalog."""
    home = tmp_path / "home"
    copy_home(web_model.home, home)
    yield from _serve(home, web_model, allow_save=True)


@dataclass
class CliServer:
    home: Path
    proc: subprocess.Popen
    output: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.found[0]

    def read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
            if m and not self.found:
                self.found.append(m.group(1))

    def wait_ready(self, timeout: float = 120.0) -> CliServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if self.found:
                try:
                    if requests.get(self.url + "/api/health", timeout=5).status_code == 200:
                        return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        raise RuntimeError("slashcat serve did not start:\n" + "".join(self.output[-30:]))

    def stop(self, timeout: float = 20.0) -> int:
        """Ctrl+C, as a person would; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.fixture(scope="session")
def cli_server_started(web_model: WebModel,
                       tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliServer]:
    """Launch the real `slashcat serve --port 0 --allow-save` in a subprocess, on a copy of the
    home, without waiting: its start-up (TensorFlow, the model) overlaps the API tests."""
    home = tmp_path_factory.mktemp("cli") / "home"
    copy_home(web_model.home, home)
    exe = Path(sys.executable).with_name("slashcat")
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    proc = subprocess.Popen(
        [str(exe), "--home", str(home), "serve", "--port", "0", "--allow-save"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    server = CliServer(home, proc)
    threading.Thread(target=server.read, daemon=True).start()
    try:
        yield server
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def cli_server(cli_server_started: CliServer) -> CliServer:
    """The `slashcat serve` subprocess, ready to answer."""
    return cli_server_started.wait_ready()
