"""Read a multipart upload into memory, with caps, and never onto disk.

Starlette's own form parser spools file parts over 1 MiB into temporary files; this reader
feeds the request stream to python-multipart itself and keeps each part in a bytearray, so
an upload touches the disk only if the user saves it to the catalog (content-addressed
store). Caps are checked while the bytes arrive: the Content-Length first, then each part,
the number of files and the whole body.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

DRAIN_FACTOR = 2  # after a cap is hit, read (and drop) up to this many times the body cap


class UploadError(Exception):
    """A request-level upload problem: one line for the user, a stable code, an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class UploadLimits:
    max_file_bytes: int = 10 * 1024 * 1024
    max_files: int = 16
    max_body_bytes: int = 40 * 1024 * 1024
    max_field_bytes: int = 4096  # a text field (e.g. the category when saving)
    # Decoding costs by pixels, not bytes: a 192 KB PNG can hold 100 Mpx of white.
    max_file_pixels: int = 40_000_000  # one upload (a 6000 x 6000 photo is 36 Mpx)
    max_request_pixels: int = 100_000_000  # all files of one request together
    max_pixels_in_flight: int = 200_000_000  # all requests being decoded at once
    busy_wait_s: float = 2.0  # how long a request waits for that budget before a 429


@dataclass
class Upload:
    """One file part: its field name, the name the client gave (display only) and the bytes."""

    field: str
    filename: str
    data: bytes


@dataclass
class Form:
    files: list[Upload] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def mib(n: int) -> str:
    return f"{n / (1024 * 1024):.3g} MiB"


async def read_form(
    content_type: str,
    content_length: str | None,
    stream: AsyncIterator[bytes],
    limits: UploadLimits,
    file_fields: frozenset[str],
    text_fields: frozenset[str] = frozenset(),
) -> Form:
    """Parse a multipart/form-data body; raises UploadError (the body is drained first)."""
    from python_multipart.multipart import parse_options_header

    kind, params = parse_options_header(content_type or "")
    if kind != b"multipart/form-data":
        raise UploadError(
            415, "not-multipart",
            "send the images as multipart/form-data (a form with file fields)",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad-multipart", "multipart/form-data without a boundary")
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise UploadError(400, "bad-request", "Content-Length is not a number") from None
        if declared > limits.max_body_bytes:
            await drain(stream, limits.max_body_bytes * DRAIN_FACTOR)
            raise UploadError(
                413, "request-too-large",
                f"the upload is {mib(declared)}; at most {mib(limits.max_body_bytes)} per request",
            )
    reader = _Reader(limits, file_fields, text_fields)
    parser = reader.parser(boundary)
    received = 0
    try:
        async for chunk in stream:
            received += len(chunk)
            if received > limits.max_body_bytes:
                raise UploadError(
                    413, "request-too-large",
                    f"the upload is over {mib(limits.max_body_bytes)}; "
                    f"send fewer or smaller files",
                )
            parser.write(chunk)
            if reader.error is not None:
                raise reader.error
        parser.finalize()
    except UploadError:
        await drain(stream, limits.max_body_bytes * DRAIN_FACTOR - received)
        raise
    except Exception as exc:  # python-multipart's FormParserError and friends
        await drain(stream, limits.max_body_bytes * DRAIN_FACTOR - received)
        raise UploadError(400, "bad-multipart", f"the multipart body is malformed ({exc})") from exc
    if reader.error is not None:
        raise reader.error
    return reader.form


async def drain(stream: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop what the client is still sending, so it gets our answer, not a reset."""
    try:
        async for chunk in stream:
            budget -= len(chunk)
            if budget <= 0:
                return
    except Exception:  # already consumed or the client went away: nothing left to drain
        return


class _Reader:
    def __init__(
        self, limits: UploadLimits, file_fields: frozenset[str], text_fields: frozenset[str]
    ) -> None:
        self.limits = limits
        self.file_fields = file_fields
        self.text_fields = text_fields
        self.form = Form()
        self.error: UploadError | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._buf = bytearray()
        self._name = ""
        self._filename: str | None = None

    def parser(self, boundary: bytes):
        from python_multipart.multipart import MultipartParser

        return MultipartParser(boundary, {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        })

    def fail(self, status: int, code: str, message: str) -> None:
        if self.error is None:
            self.error = UploadError(status, code, message)

    def on_part_begin(self) -> None:
        self._disposition = b""
        self._buf = bytearray()
        self._name = ""
        self._filename = None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = b""
        self._header_value = b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name is None:
            self.fail(400, "bad-multipart", "a form part has no name")
            return
        self._name = name.decode("utf-8", "replace")
        if b"filename" in options:
            self._filename = options[b"filename"].decode("utf-8", "replace")[:255]
            if self._name not in self.file_fields:
                self.fail(400, "unexpected-field",
                          f"unexpected file field {self._name!r}; use "
                          f"{' or '.join(sorted(self.file_fields))}")
            elif len(self.form.files) >= self.limits.max_files:
                self.fail(400, "too-many-files",
                          f"more than {self.limits.max_files} files in one request")
        elif self._name not in self.text_fields:
            self.fail(400, "unexpected-field", f"unexpected form field {self._name!r}")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        cap = self.limits.max_file_bytes if self._filename is not None else (
            self.limits.max_field_bytes
        )
        if len(self._buf) + (end - start) > cap:
            what = f"file {self._filename!r}" if self._filename is not None else (
                f"field {self._name!r}"
            )
            self.fail(413, "file-too-large", f"{what} is larger than {mib(cap)}")
            return
        self._buf += data[start:end]

    def on_part_end(self) -> None:
        if self.error is not None:
            return
        if self._filename is not None:
            self.form.files.append(Upload(self._name, self._filename, bytes(self._buf)))
        else:
            self.form.fields[self._name] = self._buf.decode("utf-8", "replace")
        self._buf = bytearray()


class PixelBudget:
    """The pixels all requests may decode at once; a request waits briefly for its share,
    then gets a 429 (its own share is already capped below the budget by max_request_pixels)."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.in_flight = 0
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        if pixels > self.limits.max_request_pixels:
            raise UploadError(
                413, "request-too-many-pixels",
                f"the images hold {pixels / 1e6:,.0f} Mpx together; at most "
                f"{self.limits.max_request_pixels / 1e6:,.0f} Mpx per request",
            )
        cap = self.limits.max_pixels_in_flight
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_flight + pixels <= cap,
                                       self.limits.busy_wait_s):
                raise UploadError(429, "busy", f"the server is decoding "
                                  f"{self.in_flight / 1e6:,.0f} Mpx already; try again shortly")
            self.in_flight += pixels
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= pixels
                self._cond.notify_all()


def header_pixels(data: bytes) -> int:
    """Width x height from the image's header (nothing decoded); 0 if it has none."""
    from catalog.errors import ImageRejected
    from catalog.imaging import open_header

    try:
        with open_header(data) as img:
            return int(img.size[0] * img.size[1])
    except ImageRejected:
        return 0
