"""The web page and JSON API over real HTTP (uvicorn on a free localhost port), and one
end-to-end run in a real headless Chromium."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from catalog.db import open_catalog
from catalog.models import Image, Label, Product, Store
from catalog.settings import Settings

from helpers import bomb_png
from helpers.web import (
    MAX_BODY,
    MAX_FILE,
    MAX_FILES,
    PER_CLASS,
    WEB_SHAPES,
    CliServer,
    Served,
    WebModel,
    noise_png,
    shape_png,
)

TIMEOUT = 30


def tiny_png(side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (side, side), (200, 0, 0)).save(buf, "PNG")
    return buf.getvalue()


def ball(seed: int = 500, fmt: str = "PNG") -> bytes:
    return shape_png("circle", WEB_SHAPES["Toys > Ball"][1], seed, fmt=fmt)


def post(server: Served, files: list[tuple[str, bytes]], field: str = "files",
         path: str = "/api/classify", **kw) -> requests.Response:
    parts = [(field, (name, data, "image/jpeg")) for name, data in files]
    return requests.post(server.url + path, files=parts, timeout=TIMEOUT, **kw)


def error_of(r: requests.Response) -> dict:
    body = r.json()
    assert set(body["error"]) == {"code", "message", "status"}
    assert body["error"]["status"] == r.status_code
    assert "\n" not in body["error"]["message"]
    return body["error"]


# ---- the API ----


def test_health_reports_model_and_limits(web_server: Served) -> None:
    r = requests.get(web_server.url + "/api/health", timeout=TIMEOUT)
    assert r.status_code == 200
    body = r.json()
    assert body["model"]["version"] == web_server.model.version
    assert body["model"]["classes"] == web_server.model.classes
    assert sorted(body["model"]["classes"]) == sorted(WEB_SHAPES)
    assert body["limits"] == {"max_file_bytes": MAX_FILE, "max_files": MAX_FILES,
                              "max_request_bytes": MAX_BODY}
    assert body["allow_save"] is False
    assert r.headers["x-content-type-options"] == "nosniff"


def test_classify_one_image(web_server: Served) -> None:
    r = post(web_server, [("ball.png", ball())])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model_version"] == web_server.model.version
    [result] = body["results"]
    assert result["ok"] is True and result["filename"] == "ball.png"
    assert result["error"] is None and len(result["sha256"]) == 64
    top = result["top_k"]
    assert len(top) == 3
    assert {g["category"] for g in top} <= set(WEB_SHAPES)
    confidences = [g["confidence"] for g in top]
    assert confidences == sorted(confidences, reverse=True)
    assert 0.0 < sum(confidences) <= 1.0 + 1e-5


def test_classify_many_keeps_order_and_top_k_param(web_server: Served) -> None:
    images = [(f"{i}.jpg", ball(600 + i, "JPEG")) for i in range(3)]
    r = post(web_server, images, params={"top_k": 2})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["filename"] for x in results] == ["0.jpg", "1.jpg", "2.jpg"]
    assert all(len(x["top_k"]) == 2 for x in results)
    assert len({x["sha256"] for x in results}) == 3


def test_same_answer_as_the_library(web_server: Served) -> None:
    data = ball(777)
    expected = web_server.classifier.classify_bytes(data, 3)  # the library, no HTTP
    got = post(web_server, [("x.png", data)]).json()["results"][0]["top_k"]
    assert [g["category"] for g in got] == [c for c, _ in expected]
    assert [g["confidence"] for g in got] == pytest.approx([p for _, p in expected], abs=1e-4)


@pytest.mark.parametrize(
    ("name", "make", "status", "code"),
    [
        ("empty.jpg", lambda: b"", 400, "empty"),
        ("notes.jpg", lambda: b"just some text, not a picture\n" * 20, 415,
         "unsupported-format"),
        ("page.png", lambda: b"<!doctype html><html><body>hi</body></html>", 415,
         "not-an-image"),
        ("blob.jpg", lambda: bytes(range(256)) * 8, 415, "unsupported-format"),
        ("bomb.png", lambda: bomb_png(12_000), 422, "too-many-pixels"),
        ("speck.png", lambda: tiny_png(8), 422, "too-small"),
        ("cut.jpg", lambda: ball(5, "JPEG")[:300], 422, "truncated"),
    ],
)
def test_bad_image_gets_its_error(web_server: Served, name, make, status, code) -> None:
    r = post(web_server, [(name, make())])
    assert r.status_code == status, r.text
    err = error_of(r)
    assert err["code"] == code
    assert name in err["message"]
    [result] = r.json()["results"]
    assert result["ok"] is False and result["error"]["code"] == code


def test_bomb_is_small_on_the_wire() -> None:
    assert len(bomb_png(12_000)) < 64 * 1024  # it is the pixel count that is refused, not the size


def test_mixed_batch_is_207_with_per_file_errors(web_server: Served) -> None:
    r = post(web_server, [("good.png", ball()), ("bad.jpg", b"<p>hello</p>"),
                          ("good2.png", ball(9))])
    assert r.status_code == 207, r.text
    results = r.json()["results"]
    assert [x["ok"] for x in results] == [True, False, True]
    assert results[1]["error"]["code"] == "not-an-image"
    assert results[1]["error"]["status"] == 415
    assert r.json()["error"] is None


def test_oversized_file_is_413(web_server: Served) -> None:
    big = ball() + b"\x00" * MAX_FILE  # an image followed by junk: over the cap either way
    r = post(web_server, [("huge.png", big)])
    assert r.status_code == 413
    err = error_of(r)
    assert err["code"] == "file-too-large" and "huge.png" in err["message"]
    # the connection was drained, not reset: the server still answers
    assert requests.get(web_server.url + "/api/health", timeout=TIMEOUT).status_code == 200


def test_oversized_request_is_413(web_server: Served) -> None:
    part = b"\x00" * (MAX_FILE - 1000)
    r = post(web_server, [("a.jpg", part), ("b.jpg", part), ("c.jpg", part)])
    assert r.status_code == 413
    assert error_of(r)["code"] == "request-too-large"


def test_oversized_chunked_request_is_413(web_server: Served) -> None:
    """Without a Content-Length the cap is counted as the bytes arrive."""
    boundary = "slashcat-test-boundary"
    part = b"\xff\xd8\xff" + b"\x00" * (MAX_FILE - 100_000)

    def body():
        for i in range(3):
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; "
                   f"filename=\"{i}.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n").encode()
            for at in range(0, len(part), 64 * 1024):
                yield part[at:at + 64 * 1024]
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    r = requests.post(web_server.url + "/api/classify", data=body(), timeout=TIMEOUT,
                      headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in {k.lower() for k in r.request.headers}
    assert r.status_code == 413
    assert error_of(r)["code"] == "request-too-large"


def test_too_many_files_is_400(web_server: Served) -> None:
    r = post(web_server, [(f"{i}.png", ball(i)) for i in range(MAX_FILES + 1)])
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "too-many-files" and str(MAX_FILES) in err["message"]


def test_no_files_wrong_field_and_not_multipart(web_server: Served) -> None:
    r = requests.post(web_server.url + "/api/classify", files=[("note", (None, "hi"))],
                      timeout=TIMEOUT)
    assert (r.status_code, error_of(r)["code"]) == (400, "unexpected-field")
    r = post(web_server, [("x.png", ball())], field="image")
    assert (r.status_code, error_of(r)["code"]) == (400, "unexpected-field")
    r = requests.post(web_server.url + "/api/classify", json={"files": []}, timeout=TIMEOUT)
    assert (r.status_code, error_of(r)["code"]) == (415, "not-multipart")
    r = requests.post(web_server.url + "/api/classify", timeout=TIMEOUT,
                      data=b"--xyz--\r\n",
                      headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert (r.status_code, error_of(r)["code"]) == (400, "no-files")
    r = requests.post(web_server.url + "/api/classify", timeout=TIMEOUT, data=b"garbage",
                      headers={"Content-Type": "multipart/form-data"})
    assert (r.status_code, error_of(r)["code"]) == (400, "bad-multipart")
    r = post(web_server, [("x.png", ball())], params={"top_k": 0})
    assert (r.status_code, error_of(r)["code"]) == (400, "bad-request")


def test_name_and_content_type_are_not_trusted(web_server: Served) -> None:
    # A real PNG called .txt with a text Content-Type is classified; the bytes decide.
    r = requests.post(web_server.url + "/api/classify", timeout=TIMEOUT,
                      files=[("files", ("photo.txt", ball(), "text/plain"))])
    assert r.status_code == 200 and r.json()["results"][0]["ok"] is True


def test_uploads_never_touch_the_disk(web_server: Served, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Starlette's form parser would spool this 1.9 MB file into a temporary file; with the
    # temp dir pointing nowhere that would fail. Our reader keeps it in memory.
    data = noise_png(800)
    assert 1024 * 1024 < len(data) < MAX_FILE
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-dir"))
    r = post(web_server, [("noise.png", data)])
    assert r.status_code == 200, r.text
    images = web_server.catalog.settings.images_dir
    with web_server.catalog.session() as session:
        stored = session.scalar(select(func.count()).select_from(Image))
    assert stored == len(WEB_SHAPES) * PER_CLASS  # the training images: classify stores none
    assert sum(1 for p in images.rglob("*") if p.is_file()) == stored


def test_errors_are_json_everywhere(web_server: Served) -> None:
    r = requests.get(web_server.url + "/nope", timeout=TIMEOUT)
    assert (r.status_code, error_of(r)["code"]) == (404, "not-found")
    r = requests.get(web_server.url + "/api/classify", timeout=TIMEOUT)
    assert (r.status_code, error_of(r)["code"]) == (405, "method-not-allowed")


def test_unknown_host_header_is_refused(web_server: Served) -> None:
    r = requests.get(web_server.url + "/api/health", headers={"Host": "evil.example:8000"},
                     timeout=TIMEOUT)
    assert (r.status_code, error_of(r)["code"]) == (400, "bad-host")
    port = web_server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"[::1]:{port}", "127.0.0.1"):
        r = requests.get(web_server.url + "/api/health", headers={"Host": host}, timeout=TIMEOUT)
        assert r.status_code == 200, host


def test_page_and_docs_are_served_without_any_cdn(web_server: Served) -> None:
    page = requests.get(web_server.url + "/", timeout=TIMEOUT)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        r = requests.get(web_server.url + asset, timeout=TIMEOUT)
        assert r.status_code == 200, asset
        assert "http://" not in r.text and "https://" not in r.text, asset
    icon = requests.get(web_server.url + "/favicon.ico", timeout=TIMEOUT)
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert "http://" not in page.text and "https://" not in page.text
    docs = requests.get(web_server.url + "/docs", timeout=TIMEOUT)
    assert docs.status_code == 200
    assert "/docs-assets/swagger-ui-bundle.js" in docs.text and "cdn" not in docs.text
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert requests.get(web_server.url + asset, timeout=TIMEOUT).status_code == 200
    spec = requests.get(web_server.url + "/openapi.json", timeout=TIMEOUT).json()
    assert {"/api/classify", "/api/health", "/api/save"} <= set(spec["paths"])
    body = spec["paths"]["/api/classify"]["post"]["requestBody"]["content"]
    assert "files" in body["multipart/form-data"]["schema"]["properties"]


# ---- saving to the catalog ----


def test_save_is_off_by_default(web_server: Served) -> None:
    r = requests.post(web_server.url + "/api/save", timeout=TIMEOUT,
                      files=[("file", ("b.png", ball(), "image/png"))],
                      data={"category": "Toys > Ball"})
    assert (r.status_code, error_of(r)["code"]) == (403, "save-disabled")
    with web_server.catalog.session() as session:
        assert session.scalar(select(Store).where(Store.name == "uploads")) is None


def save(server: Served, data: bytes, category: str, **kw) -> requests.Response:
    return requests.post(server.url + "/api/save", timeout=TIMEOUT,
                         files=[("file", ("mine.png", data, "image/png"))],
                         data={"category": category}, **kw)


def test_save_stores_image_and_human_label(save_server: Served) -> None:
    data = ball(4242)
    r = save(save_server, data, "Home > Box")
    assert r.status_code == 201, r.text
    saved = r.json()
    assert saved["image_status"] == "new" and saved["category"] == "Home > Box"
    cat = save_server.catalog
    with cat.session() as session:
        image = session.scalar(select(Image).where(Image.sha256 == saved["image_sha256"]))
        assert image is not None and image.path
        assert cat.store.path(image.path).read_bytes() == data
        product = session.get_one(Product, saved["product_id"])
        assert product.store.name == "uploads"
        label = session.get_one(Label, saved["label_id"])
        assert (label.source, label.author, label.product_id) == ("human", "web", product.id)
    # the same bytes again: stored once, a second label on the same product
    again = save(save_server, data, "Toys > Ball").json()
    assert again["image_status"] == "duplicate"
    assert again["product_id"] == saved["product_id"]
    with cat.session() as session:
        labels = session.scalars(select(Label.category_id).where(
            Label.product_id == saved["product_id"])).all()
    assert len(labels) == 2


def test_save_refuses_bad_input_and_writes_nothing(save_server: Served) -> None:
    cat = save_server.catalog

    def counts() -> tuple[int, int, int]:
        with cat.session() as session:
            return tuple(session.scalar(select(func.count()).select_from(t))
                         for t in (Image, Product, Label))

    before = counts()
    files_before = sorted(cat.settings.images_dir.rglob("*"))
    r = save(save_server, b"<html>plain text</html>\n", "Home > Box")
    assert (r.status_code, error_of(r)["code"]) == (415, "not-an-image")
    r = save(save_server, b"", "Home > Box")
    assert (r.status_code, error_of(r)["code"]) == (400, "empty")
    r = save(save_server, bomb_png(12_000), "Home > Box")
    assert (r.status_code, error_of(r)["code"]) == (422, "too-many-pixels")
    r = save(save_server, ball(1), "No > Such")
    assert (r.status_code, error_of(r)["code"]) == (422, "unknown-category")
    r = save(save_server, ball(1), "  ")
    assert (r.status_code, error_of(r)["code"]) == (400, "no-category")
    r = save(save_server, ball(1), "Home > Box", headers={"Origin": "http://evil.example"})
    assert (r.status_code, error_of(r)["code"]) == (403, "cross-origin")
    assert counts() == before
    assert sorted(cat.settings.images_dir.rglob("*")) == files_before


# ---- the page in a real browser ----

CHROMIUM = "/usr/bin/chromium"
BROWSER_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


def test_page_in_headless_chromium(cli_server: CliServer, web_model: WebModel,
                                   tmp_path: Path) -> None:
    """The real `slashcat serve --allow-save`, driven by a real browser: upload, read, save."""
    sync_playwright = browser_or_skip()
    good = tmp_path / "red-ball.png"
    good.write_bytes(ball(31))
    bad = tmp_path / "notes.jpg"
    bad.write_text("<html>this is not an image</html>\n")
    shot = tmp_path / "web-page.png"
    requested: list[str] = []
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
            args=BROWSER_ARGS, viewport={"width": 900, "height": 700},
        )
        try:
            page = context.new_page()
            page.on("request", lambda req: requested.append(req.url))
            page.goto(cli_server.url + "/")
            page.wait_for_function(
                "document.querySelector('#model-version').textContent !== '…'", timeout=15_000)
            assert page.text_content("#model-version") == web_model.version
            page.set_input_files("#picker", [str(good), str(bad)])
            page.wait_for_selector(".result.done .guess .category", timeout=15_000)
            page.wait_for_selector(".result.failed .error", timeout=15_000)
            done = page.locator(".result.done")
            assert done.locator(".filename").text_content() == "red-ball.png"
            categories = done.locator(".guess .category").all_text_contents()
            confidences = done.locator(".guess .confidence").all_text_contents()
            assert len(categories) == 3 and set(categories) <= set(WEB_SHAPES)
            assert all(c.endswith("%") for c in confidences)
            assert done.locator(".version").text_content() == web_model.version
            assert done.locator(".thumb img").evaluate("img => img.naturalWidth") == 48
            error = page.locator(".result.failed .error").text_content() or ""
            assert "notes.jpg" in error and "not-an-image" in error
            assert not page.locator(".result.failed form.save").is_visible()
            assert page.locator(".result.failed .thumb img").get_attribute("src") is None
            # save with a chosen category
            done.locator("select").select_option("Home > Triangle")
            done.locator("button[type=submit]").click()
            page.wait_for_selector(".save-status.saved", timeout=15_000)
            assert "Home > Triangle" in (done.locator(".save-status").text_content() or "")
            page.screenshot(path=str(shot), full_page=True)
            # the API docs render offline: Swagger UI comes from the app, not a CDN
            page.goto(cli_server.url + "/docs")
            page.wait_for_selector(".swagger-ui .opblock-summary-path", timeout=15_000)
            paths = page.locator(".opblock-summary-path").all_text_contents()
            assert {"/api/classify", "/api/health", "/api/save"} <= {p.strip() for p in paths}
            page.screenshot(path=str(tmp_path / "docs-page.png"))
        finally:
            context.close()
    assert shot.stat().st_size > 5000
    assert all(u.startswith((cli_server.url, "blob:", "data:")) for u in requested), requested
    assert cli_server.stop() == 0, "".join(cli_server.output[-20:])
    cat = open_catalog(Settings.load(home=cli_server.home, env={}))
    try:
        with cat.session() as session:
            label = session.scalars(select(Label).order_by(Label.id.desc())).first()
            assert label is not None and (label.source, label.author) == ("human", "web")
            product = session.get_one(Product, label.product_id)
            assert product.store.name == "uploads"
    finally:
        cat.close()


# ---- the command ----


def test_help_does_not_load_the_web_stack() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['slashcat', 'serve', '--help']\n"
        "from cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = {'fastapi', 'uvicorn', 'starlette', 'tensorflow', 'keras'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "200"}, cwd=Path(__file__).parents[1])
    assert r.returncode == 0, r.stderr
    assert "Example: slashcat serve --port 8000" in r.stdout
    assert "--allow-save" in r.stdout and "127.0.0.1" in r.stdout


def test_serve_without_a_model_is_one_line(cli) -> None:
    assert cli("init").exit_code == 0
    r = cli("serve", "--port", "0")
    assert r.exit_code == 1
    assert "no active model" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_serve_unknown_model_and_busy_port(cli, web_model: WebModel) -> None:
    r = cli("serve", "--port", "0", "--model", "v99", home_dir=web_model.home)
    assert r.exit_code == 1 and "no model 'v99'" in r.output
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = cli("serve", "--port", str(port), home_dir=web_model.home)
    assert r.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.output and "Traceback" not in r.output
    r = cli("serve", "--max-files", "0", home_dir=web_model.home)
    assert r.exit_code == 1 and "--max-files" in r.output


def test_concurrent_requests_get_their_own_answers(web_server: Served) -> None:
    """Concurrent requests share batched model calls; each must get its own images' answer."""
    from concurrent.futures import ThreadPoolExecutor

    clf = web_server.classifier
    shapes = list(WEB_SHAPES.items())
    jobs = []
    for i in range(12):
        _, (shape, colour) = shapes[i % 3]
        n = 1 + i % 3
        jobs.append([shape_png(shape, colour, 900 + 10 * i + j) for j in range(n)])

    def send(blobs: list[bytes]) -> list[list[str]]:
        r = post(web_server, [(f"{k}.png", b) for k, b in enumerate(blobs)])
        assert r.status_code == 200, r.text
        return [[g["category"] for g in x["top_k"]] for x in r.json()["results"]]

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, jobs))
    for blobs, got in zip(jobs, answers, strict=True):
        assert got == [[c for c, _ in clf.classify_bytes(b, 3)] for b in blobs]


def test_classify_with_an_optional_title(web_server: Served) -> None:
    """The title field is optional; an image-only model answers as without it."""
    parts = [("files", ("ball.png", ball(), "image/png")), ("title", (None, "عباية &amp; 👟"))]
    r = requests.post(web_server.url + "/api/classify", files=parts, timeout=TIMEOUT)
    assert r.status_code == 200, r.text
    plain = post(web_server, [("ball.png", ball())]).json()["results"][0]["top_k"]
    assert r.json()["results"][0]["top_k"] == plain
