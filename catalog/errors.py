"""Errors of the catalog. Every user-facing error of slashcat derives from SlashcatError."""


class SlashcatError(Exception):
    """A problem the user can fix; the CLI prints it as one line."""


class CatalogError(SlashcatError):
    """Something is wrong with the catalog itself."""


class CatalogNotFound(CatalogError):
    pass


class CatalogTooNew(CatalogError):
    pass


class CatalogLocked(CatalogError):
    pass


class ImageRejected(SlashcatError):
    """Bytes that are not a usable image. `reason` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnreadableImage(ImageRejected, ValueError):
    """Bytes that the decoder refuses (truncated, corrupt). A ValueError too, as decoders'
    own errors are, so callers that skip bad files catch one type."""


class UnknownCategory(SlashcatError):
    pass


class InvalidInput(SlashcatError):
    """A bad option value, path or file given by the user."""


class ModelNotFound(SlashcatError):
    """No model with the asked-for version, or no active model."""


def one_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, cut to `limit`; its type if it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else type(exc).__name__


def check_fraction(name: str, value: float | None) -> None:
    """A confidence or threshold option must lie in [0, 1]."""
    if value is not None and not 0.0 <= value <= 1.0:
        raise InvalidInput(f"{name} must be between 0 and 1, got {value}")
