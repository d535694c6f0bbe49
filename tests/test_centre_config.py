"""The centre's TOML configuration: defaults, routes and refusals of bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from centre.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "centre.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_are_safe_and_routes_parse(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """
pki_dir = "pki"
[[routes]]
code = "192015"
name = "甲府市"
endpoints = ["127.0.0.1:7001", "127.0.0.1:7002"]
tls_server_name = "kofu"
"""))
    assert config.pki_dir == (tmp_path / "pki").resolve()
    assert not config.test_mode and not config.insecure_dev
    assert config.commission_yen == 120
    assert config.routes[0].endpoints == ("127.0.0.1:7001", "127.0.0.1:7002")
    assert config.routes[0].tls_server_name == "kofu"
    assert config.effective_store_url.startswith("sqlite:///")


@pytest.mark.parametrize("text, problem", [
    ('bind = "x"', "pki_dir"),
    ('pki_dir = "p"\nworkers = -1', "workers"),
    ('pki_dir = "p"\ntest_mode = "yes"', "test_mode"),
    ('pki_dir = "p"\nunknown_key = 1', "unknown"),
    ('pki_dir = "p"\n[[routes]]\ncode = "192016"\nendpoints = ["a:1"]', "code"),
    ('pki_dir = "p"\n[[routes]]\ncode = "192015"\nendpoints = []', "endpoints"),
])
def test_bad_values_are_refused(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        load_config(write(tmp_path, text))
