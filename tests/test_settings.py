"""Settings precedence: defaults < config file < SLASHCAT_* environment < flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalog.errors import InvalidInput
from catalog.settings import Settings


def test_defaults(tmp_path: Path) -> None:
    s = Settings.load(home=tmp_path, env={})
    assert s.db_url == f"sqlite:///{(tmp_path / 'catalog.db').resolve()}"
    assert s.max_pixels == 100_000_000


def test_precedence(tmp_path: Path) -> None:
    (tmp_path / "slashcat.toml").write_text("[slashcat]\nmin_image_side = 10\nmax_pixels = 5\n")
    env = {"SLASHCAT_MAX_PIXELS": "7", "SLASHCAT_HOME": "/elsewhere"}
    s = Settings.load(home=tmp_path, env=env, busy_timeout_s=2.5)
    assert (s.min_image_side, s.max_pixels, s.busy_timeout_s) == (10, 7, 2.5)
    assert s.home == tmp_path


def test_home_and_db_from_environment(tmp_path: Path) -> None:
    s = Settings.load(env={"SLASHCAT_HOME": str(tmp_path), "SLASHCAT_DB": "sqlite:///x.db"})
    assert s.home == tmp_path and s.db_url == "sqlite:///x.db"


def test_bad_value_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="max_pixels"):
        Settings.load(home=tmp_path, env={"SLASHCAT_MAX_PIXELS": "lots"})


def test_a_misspelt_config_key_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "slashcat.toml").write_text("[slashcat]\nmax_pixel = 5\n")
    with pytest.raises(InvalidInput, match=r"unknown setting 'max_pixel' in .*slashcat\.toml"):
        Settings.load(home=tmp_path, env={})


def test_a_misspelt_environment_name_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="unknown setting 'SLASHCAT_MAX_PIXEL' in the env"):
        Settings.load(home=tmp_path, env={"SLASHCAT_MAX_PIXEL": "5"})


def test_the_weights_cache_variable_is_not_taken_for_a_misspelt_setting(tmp_path: Path) -> None:
    s = Settings.load(home=tmp_path, env={"SLASHCAT_CACHE_DIR": str(tmp_path / "cache")})
    assert s.home == tmp_path


def test_the_cli_reports_a_misspelt_key_as_one_line(tmp_path: Path, cli) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "slashcat.toml").write_text("min_image_sides = 5\n")
    result = cli("stats")
    assert result.exit_code == 1
    assert "unknown setting 'min_image_sides'" in result.output
    assert "Traceback" not in result.output


def test_image_limits_follow_the_settings(tmp_path: Path) -> None:
    limits = Settings.load(home=tmp_path, env={}, max_pixels=9, min_image_side=3).image_limits()
    assert (limits.max_pixels, limits.min_side) == (9, 3)
