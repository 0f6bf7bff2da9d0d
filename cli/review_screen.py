"""The full-screen review (Textual). Imported only by `slashcat review`, so --help stays fast.

The screen holds no state of its own worth keeping: every key that decides calls the library's
ReviewSession, which commits at once; quitting or a crash loses nothing.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Container, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, OptionList, Static

from catalog.errors import SlashcatError
from catalog.imaging import read_file, thumbnail
from catalog.review import ReviewItem, ReviewSession

BAR_WIDTH = 24
IMAGE_CELLS = (42, 36)  # the most cells a picture gets (width, height)
TEXT_MODES = ("HalfcellImage", "UnicodeImage")  # draw 1x2 pixels per cell

HELP = """\
[b]Keys[/]
  [b]Enter[/] / [b]a[/]   accept the model's top prediction
  [b]1[/] [b]2[/] [b]3[/]       choose one of the top three
  [b]c[/]           pick any category (type to filter, ↑/↓, Enter; Esc cancels)
  [b]s[/]           skip: the item goes to the end of this session and comes back next time
  [b]u[/]           undo the last decision (a retraction is recorded; history is kept)
  [b]o[/]           open the image in the system viewer
  [b]?[/]           this help
  [b]q[/]           quit; every decision is already saved

Press any key to close."""


def image_widget_class(mode: str) -> type[Any] | None:
    """The textual-image widget for a mode; 'auto' asks the terminal (kitty/sixel/half-blocks).

    Call before the app starts: textual-image queries the terminal at import time.
    """
    if mode == "none":
        return None
    import textual_image.widget as tiw

    return {
        "auto": tiw.Image,
        "halfcell": tiw.HalfcellImage,
        "sixel": tiw.SixelImage,
        "tgp": tiw.TGPImage,
        "unicode": tiw.UnicodeImage,
    }[mode]


def picture_size(image_class: type[Any] | None) -> tuple[int, int]:
    """The pixels a picture needs at most: cells x pixels per cell of the drawing method."""
    cols, rows = IMAGE_CELLS
    if image_class is None or image_class.__name__ in TEXT_MODES:
        return cols, rows * 2
    import textual_image.renderable as tir

    if image_class.__name__ == "AutoImage" and tir.Image in (tir.HalfcellImage, tir.UnicodeImage):
        return cols, rows * 2
    width, height = cell_pixels()
    return cols * width, rows * height


def cell_pixels() -> tuple[int, int]:
    """A terminal cell's size in pixels, from the window size the kernel keeps for the
    terminal (TIOCGWINSZ); 10x20, the common size, when the terminal does not say."""
    try:
        import fcntl
        import termios

        terminal = sys.__stdout__.fileno() if sys.__stdout__ else -1  # Textual swaps stdout
        winsize = fcntl.ioctl(terminal, termios.TIOCGWINSZ, bytes(8))
        rows, cols, width, height = struct.unpack("4H", winsize)
    except (ImportError, OSError, ValueError):  # no terminal, or not POSIX
        return 10, 20
    if not (rows and cols and width and height):
        return 10, 20
    return width // cols, height // rows


def load_picture(path: str, size: tuple[int, int]) -> Any:
    """The image decoded at no more than the size it is drawn at (JPEG draft mode makes a big
    photo decode at 1/2..1/8 scale); None if the file is missing or unreadable."""
    try:
        return thumbnail(read_file(path), size)
    except (OSError, ValueError):
        return None


def bar(probability: float, width: int = BAR_WIDTH) -> Text:
    filled = round(max(0.0, min(1.0, probability)) * width)
    colour = "green" if probability >= 0.7 else "yellow" if probability >= 0.4 else "red"
    text = Text("█" * filled, style=colour)
    text.append("░" * (width - filled), style="grey37")
    return text


def predictions_text(item: ReviewItem) -> Text:
    text = Text()
    for rank, (name, probability) in enumerate(item.top_k[:3], start=1):
        text.append(f" {rank} ", style="bold reverse")
        text.append(" ")
        text.append_text(bar(probability))
        text.append(f" {probability:6.1%}  ", style="bold")
        text.append(name + "\n")
    return text


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    #help { width: 92; height: auto; border: round $accent; padding: 1 2; background: $panel; }
    """

    def compose(self) -> ComposeResult:
        yield Static(HELP, id="help")

    def on_key(self, event: Any) -> None:
        event.stop()
        self.dismiss(None)


class PickScreen(ModalScreen[str | None]):
    """Pick any category: type to filter (every word must appear), arrows to move, Enter."""

    DEFAULT_CSS = """
    PickScreen { align: center middle; }
    #pick { width: 90; height: 30; border: round $accent; background: $panel; }
    #pick OptionList { height: 1fr; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "cancel"),
        Binding("down", "move(1)", "down", show=False),
        Binding("up", "move(-1)", "up", show=False),
    ]

    def __init__(self, categories: list[str]) -> None:
        super().__init__()
        self.categories = categories
        self.shown = list(categories)

    def compose(self) -> ComposeResult:
        with Vertical(id="pick"):
            yield Input(placeholder="type to filter categories", id="filter")
            yield OptionList(*self.shown, id="options")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self._highlight_first()

    def _highlight_first(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = 0 if self.shown else None

    def on_input_changed(self, event: Input.Changed) -> None:
        words = event.value.lower().split()
        self.shown = [c for c in self.categories if all(w in c.lower() for w in words)]
        options = self.query_one(OptionList)
        options.set_options(self.shown)
        self._highlight_first()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        index = self.query_one(OptionList).highlighted
        if index is not None and self.shown:
            self.dismiss(self.shown[index])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.shown[event.option_index])

    def action_move(self, step: int) -> None:
        options = self.query_one(OptionList)
        if self.shown:
            current = options.highlighted or 0
            options.highlighted = max(0, min(len(self.shown) - 1, current + step))

    def action_cancel(self) -> None:
        self.dismiss(None)


class ReviewApp(App[None]):
    """One card at a time; keys in the footer."""

    TITLE = "slashcat review"
    CSS = """
    #top { height: 1; background: $accent; color: $text; padding: 0 1; }
    #card { height: 1fr; }
    #image-box { width: 44; height: 100%; padding: 1 1; align: center middle; }
    #image-box .image { width: auto; height: auto; }
    #no-image { width: 100%; height: 100%; content-align: center middle; color: $text-muted; }
    #facts { width: 1fr; padding: 1 2; }
    #title { text-style: bold; margin-bottom: 1; }
    #url { color: $text-muted; }
    #store { margin-bottom: 1; }
    #preds { margin: 1 0; }
    #status { height: auto; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "accept", "accept"),
        Binding("a", "accept", "accept", show=False),
        Binding("1", "choose(1)", "1–3 choose"),
        Binding("2", "choose(2)", "choose 2", show=False),
        Binding("3", "choose(3)", "choose 3", show=False),
        Binding("c", "pick", "pick category"),
        Binding("s", "skip", "skip"),
        Binding("u", "undo", "undo"),
        Binding("o", "open", "open image"),
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(
        self,
        review: ReviewSession,
        categories: list[str],
        image_class: type[Any] | None = None,
        heading: str = "",
        opener: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__()
        self.review = review
        self.categories = categories
        self.image_class = image_class
        self.heading = heading
        self.opener = opener or open_in_viewer
        self.drawn = 0  # cards fully drawn, and when the last one was (for the benchmark)
        self.drawn_at = 0.0
        self.picture_px = picture_size(image_class)
        self._pictures: dict[str, Any] = {}  # path -> decoded picture, for this and the next card

    def compose(self) -> ComposeResult:
        yield Static(id="top")
        with Horizontal(id="card"):
            with Container(id="image-box"):
                if self.image_class is not None:
                    yield self.image_class(classes="image")
                yield Static("(no image)", id="no-image")
            with Vertical(id="facts"):
                yield Static(id="title")
                yield Static(id="url")
                yield Static(id="store")
                yield Static(id="dups")
                yield Static(id="preds")
                yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        for image in self.query(".image"):
            image.auto_links = False  # a picture has no links; saves a pass over every cell
        self.show_card()

    # --- drawing -------------------------------------------------------------------------

    def show_card(self, status: Text | str = "") -> None:
        try:
            item = self.review.current()
        except SlashcatError as exc:  # e.g. the catalog is locked for a moment: keep the card
            self.query_one("#status", Static).update(Text(str(exc), style="red"))
            return
        top = self.query_one("#top", Static)
        position = f"{self.review.position} / {self.review.total}"
        top.update(Text.assemble(
            (f"{self.heading}  ", "bold"), (" " * 4), (position, "bold"),
        ))
        if item is None:
            self._show_done()
        else:
            self._show_item(item)
        self.query_one("#status", Static).update(status)
        self.call_after_refresh(self._mark_drawn)

    def _mark_drawn(self) -> None:
        self.drawn += 1
        self.drawn_at = time.perf_counter()
        self.set_timer(0.02, self._prefetch)

    def _prefetch(self) -> None:
        """While the person looks at this card, load the next one's facts and picture."""
        if len(self.review.pending) < 2:
            return
        try:
            item = self.review.item(self.review.pending[1])
        except SlashcatError:
            return
        if item.image_path is not None:
            self._picture(str(item.image_path))

    def _picture(self, path: str) -> Any:
        if path not in self._pictures:
            if len(self._pictures) > 8:
                self._pictures.clear()
            self._pictures[path] = load_picture(path, self.picture_px)
        return self._pictures[path]

    def _show_item(self, item: ReviewItem) -> None:
        self._set_image(str(item.image_path) if item.image_path else None)
        self.query_one("#title", Static).update(Text(item.title or "(no title)"))
        self.query_one("#url", Static).update(Text(item.url))
        store = Text("store category: ", style="dim")
        store.append(item.store_path or "—")
        if item.store_label and item.store_label != item.store_path:
            store.append(f"  (label: {item.store_label})", style="dim")
        self.query_one("#store", Static).update(store)
        dups = "no duplicates" if item.duplicates == 0 else (
            f"{item.duplicates} duplicate image{'s' if item.duplicates != 1 else ''} share this "
            "picture")
        self.query_one("#dups", Static).update(Text(dups, style="dim"))
        header = Text(f"model {item.model_version}: confidence {item.confidence:.0%}, "
                      f"margin {item.margin:.2f}\n", style="dim")
        header.append_text(predictions_text(item))
        explained = item.explanation()
        if explained:  # title and picture disagree: say which one the prediction follows
            header.append(f"\n{explained}", style="bold yellow")
        self.query_one("#preds", Static).update(header)

    def _show_done(self) -> None:
        self._set_image(None)
        summary = self.review.summary()
        self.query_one("#title", Static).update(Text("Nothing left to review.", style="bold"))
        self.query_one("#url", Static).update(
            f"{summary.decisions} decisions this session. Press q to quit or u to undo."
        )
        for name in ("#store", "#dups", "#preds"):
            self.query_one(name, Static).update("")

    def _set_image(self, path: str | None) -> None:
        placeholder = self.query_one("#no-image", Static)
        images = self.query(".image")
        picture = self._picture(path) if path is not None and images else None
        if images:
            image: Any = images.first()
            image.image = picture
            image.display = picture is not None
        placeholder.update("(no image)" if path is None or not images else "(image unreadable)")
        placeholder.display = picture is None

    # --- actions -------------------------------------------------------------------------

    def _decide(self, act: Callable[[], Any]) -> None:
        if self.review.done:
            self.show_card(Text("Nothing left to decide.", style="yellow"))
            return
        try:
            decision = act()
        except SlashcatError as exc:
            self.query_one("#status", Static).update(Text(str(exc), style="red"))
            return
        verb = "Accepted" if decision.accepted else "Corrected to"
        self.show_card(Text(f"✓ {verb} {decision.category}", style="green"))

    def action_accept(self) -> None:
        self._decide(self.review.accept)

    def action_choose(self, rank: int) -> None:
        self._decide(lambda: self.review.choose(rank))

    def action_pick(self) -> None:
        if self.review.done:
            return

        def chosen(category: str | None) -> None:
            if category is not None:
                self._decide(lambda: self.review.decide(category))

        self.push_screen(PickScreen(self.categories), chosen)

    def action_skip(self) -> None:
        if not self.review.done:
            self.review.skip()
            self.show_card(Text("Skipped: it comes back at the end.", style="yellow"))

    def action_undo(self) -> None:
        try:
            undone = self.review.undo()
        except SlashcatError as exc:
            self.query_one("#status", Static).update(Text(str(exc), style="red"))
            return
        message = "Nothing to undo." if undone is None else f"↶ Undid {undone.category}"
        self.show_card(Text(message, style="yellow"))

    def action_open(self) -> None:
        item = self.review.current()
        status = self.query_one("#status", Static)
        if item is None or item.image_path is None:
            status.update(Text("No image file for this product.", style="yellow"))
        elif not self.opener(str(item.image_path)):
            status.update(Text("No system image viewer (xdg-open) here.", style="yellow"))
        else:
            status.update(Text(f"Opened {item.image_path.name}", style="dim"))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def open_in_viewer(path: str) -> bool:
    """Open a file with xdg-open in the background; False when there is no viewer."""
    opener = shutil.which("xdg-open")
    if opener is None:
        return False
    subprocess.Popen(
        [opener, path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )
    return True


def run_review(
    review: ReviewSession, categories: list[str], image_mode: str = "auto", heading: str = ""
) -> None:
    """Run the screen until the person quits."""
    image_class = image_widget_class(image_mode)
    ReviewApp(review, categories, image_class, heading).run()
