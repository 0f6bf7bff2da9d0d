"""What the global options give every command: settings, a console and the open catalog."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from catalog.errors import SlashcatError
from catalog.settings import Settings

if TYPE_CHECKING:
    from catalog.db import Catalog

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppState:
    settings: Settings
    console: Console = field(default_factory=Console)
    err: Console = field(default_factory=lambda: Console(stderr=True))
    _catalog: Catalog | None = None

    def catalog(self, create: bool = False) -> Catalog:
        if self._catalog is None:
            from catalog.db import open_catalog  # SQLAlchemy loads only when a command needs it

            self._catalog = open_catalog(self.settings, create=create)
        return self._catalog


def state(ctx: typer.Context) -> AppState:
    obj = ctx.find_root().obj
    if obj is None:  # a command invoked without the callback (tests of a sub-app)
        obj = ctx.find_root().obj = AppState(Settings.load())
    return obj


def fail(ctx: typer.Context, message: str, exc: BaseException | None = None) -> None:
    st = state(ctx)
    if exc is not None and st.settings.verbose:
        st.err.print(traceback.format_exc(), markup=False, highlight=False)
    st.err.print(f"[bold red]Error:[/] {message}", highlight=False)
    raise typer.Exit(1)


def user_errors(func: F) -> F:
    """Turn domain errors into one red line and exit code 1 (a traceback only with --verbose);
    a closed output pipe ends the command quietly with exit code 0."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx") or next(a for a in args if isinstance(a, typer.Context))
        try:
            return func(*args, **kwargs)
        except SlashcatError as exc:
            fail(ctx, escape(str(exc)), exc)  # a message's [brackets] are text, not markup
        except BrokenPipeError:  # `slashcat export - | head` closed the pipe: normal for a CLI
            _silence_stdout()
            raise typer.Exit(0) from None
        except KeyboardInterrupt:
            state(ctx).err.print("[yellow]Interrupted; everything committed so far is kept.[/]")
            raise typer.Exit(130) from None
        finally:
            cat = state(ctx)._catalog
            if cat is not None:
                cat.close()
                state(ctx)._catalog = None

    return wrapper  # type: ignore[return-value]


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's last flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
