"""One settings object: defaults < config file < SLASHCAT_* environment < flags."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from catalog.errors import InvalidInput

if TYPE_CHECKING:
    from catalog.images import Limits

CONFIG_NAME = "slashcat.toml"
ENV_PREFIX = "SLASHCAT_"
# Read where they are used, not settings of a home: the converted backbone weights' cache.
OTHER_ENV = {"SLASHCAT_CACHE_DIR"}


@dataclass(frozen=True)
class Settings:
    home: Path = Path("slashcat-data")
    db: str = ""  # SQLAlchemy URL; empty means SQLite at <home>/catalog.db
    verbose: bool = False
    quiet: bool = False
    busy_timeout_s: float = 10.0
    max_pixels: int = 100_000_000
    max_image_bytes: int = 50 * 1024 * 1024
    min_image_side: int = 32
    dedupe_threshold: int = 10
    """Near duplicates: pHash AND dHash within this many bits, then verified by colour (each
    candidate pair's 16x16 colour signatures must agree >= catalog.dedupe.VERIFY_CUT = 0.97).
    Chosen by bench/dedupe_quality.py (7,189 shop photos + 7,000 planted copies; a pair of
    originals counts as true only if the two are the same picture, pixel for pixel on the
    product): product photos on white share silhouettes, so the hashes alone give precision
    0.98 at 2 and 0.14 at 10. The colour check removes most pairs of different products, so
    the threshold can be loosened for recall: at 10 with the check, resize 50 % 0.989/1.000,
    JPEG q30 0.990/0.999, brightness +15 % 0.992/0.955 (precision/recall), all-pair precision
    0.974, largest cluster 31; on a second pool (seed 5) 0.981/1.000, 0.981/0.999 and
    0.986/0.950. The errors left are colour variants of one product shot identically (a tan
    and a brown belt), which the check takes for a brightness change. Crop 5 % (recall 0.10)
    and text (0.004) are not found. `--no-verify` turns the check off (then use a threshold
    of 2)."""
    user_agent: str = "slashcat/0.1 (+https://github.com/slashcat/slashcat; catalog crawler)"

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{(self.home / 'catalog.db').resolve()}"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def is_sqlite(self) -> bool:
        return self.db_url.startswith("sqlite")

    def image_limits(self) -> Limits:
        """The limits every image is checked against, wherever it comes from."""
        from catalog.images import Limits  # Pillow and numpy load only when images are read

        return Limits(self.max_pixels, self.max_image_bytes, self.min_image_side)

    @classmethod
    def load(
        cls,
        home: str | Path | None = None,
        db: str | None = None,
        env: Mapping[str, str] | None = None,
        **flags: Any,
    ) -> Settings:
        env = os.environ if env is None else env
        home_path = Path(home or env.get("SLASHCAT_HOME") or cls.home)
        values: dict[str, Any] = {"home": home_path}
        values.update(_read_config(home_path / CONFIG_NAME))
        values.update(_from_env(env))
        if home is not None:
            values["home"] = Path(home)
        if db:
            values["db"] = db
        values.update({k: v for k, v in flags.items() if v is not None})
        return _build(values)


def _field_types() -> dict[str, Any]:
    return {f.name: f.type for f in fields(Settings)}


def _check_known(names: Iterable[str], where: str, spell: Callable[[str], str]) -> None:
    """A typo in a setting's name must not silently do nothing."""
    known = _field_types()
    for name in names:
        if name not in known:
            choices = ", ".join(spell(k) for k in known)
            raise InvalidInput(f"unknown setting {spell(name)!r} in {where}; known: {choices}")


def _coerce(name: str, value: Any) -> Any:
    kind = _field_types()[name]
    try:
        if kind == "Path":
            return Path(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).lower() in {"1", "true", "yes"}
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError as exc:
        raise InvalidInput(f"setting {name}: {value!r} is not a valid {kind}") from exc
    return str(value)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"cannot read config {path}: {exc}") from exc
    values = dict(data.get("slashcat", data))
    _check_known(values, str(path), str)
    return values


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    names = {key[len(ENV_PREFIX):].lower(): key for key in env
             if key.startswith(ENV_PREFIX) and key not in OTHER_ENV}
    _check_known(names, "the environment", lambda name: ENV_PREFIX + name.upper())
    return {name: env[key] for name, key in names.items() if name != "home"}


def _build(values: dict[str, Any]) -> Settings:
    _check_known(values, "the flags", str)
    return replace(Settings(), **{k: _coerce(k, v) for k, v in values.items()})
