"""The validated-config cache: a command reads an unchanged config without validating it again,
and every change validation could see (the file, an environment variable it named, a file it
checked) is validated again."""

from __future__ import annotations

import os
import shutil

from conftest import EXAMPLE_CONFIG

from ffctl.core import config as config_module
from ffctl.core.config import load_config


def _count_parses(monkeypatch) -> list[str]:
    seen: list[str] = []
    real = config_module.parse_config

    def counting(text, file="ffctl.toml"):
        seen.append(file)
        return real(text, file)

    monkeypatch.setattr(config_module, "parse_config", counting)
    return seen


def test_an_unchanged_config_is_validated_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCTL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ffctl.toml"
    shutil.copy(EXAMPLE_CONFIG, path)
    parses = _count_parses(monkeypatch)
    first = load_config(path)
    second = load_config(path)
    assert len(parses) == 1
    assert second == first and second.nodes == first.nodes and second.warnings == first.warnings
    assert (tmp_path / "cache").stat().st_mode & 0o077 == 0  # private: entries are pickles


def test_an_edit_of_the_same_size_in_the_same_second_is_seen(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCTL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ffctl.toml"
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    assert 'timezone = "Asia/Shanghai"' in text
    path.write_text(text, encoding="utf-8")
    before = path.stat()
    assert load_config(path).timezone == "Asia/Shanghai"
    path.write_text(text.replace('timezone = "Asia/Shanghai"', 'timezone = "Asia/Singapore"'), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size, same mtime
    assert load_config(path).timezone == "Asia/Singapore"


def test_an_environment_variable_the_config_names_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCTL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "ffctl.toml"
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    path.write_text(text + '\n[users.zoe]\nwecom = { url_env = "FFCTL_TEST_CACHE_PROBE_URL" }\n', encoding="utf-8")
    monkeypatch.delenv("FFCTL_TEST_CACHE_PROBE_URL", raising=False)
    assert any("FFCTL_TEST_CACHE_PROBE_URL" in w for w in load_config(path).warnings)
    monkeypatch.setenv("FFCTL_TEST_CACHE_PROBE_URL", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x")
    assert not any("FFCTL_TEST_CACHE_PROBE_URL" in w for w in load_config(path).warnings)


def test_a_damaged_or_foreign_entry_is_ignored(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FFCTL_CACHE_DIR", str(cache))
    path = tmp_path / "ffctl.toml"
    shutil.copy(EXAMPLE_CONFIG, path)
    load_config(path)
    (entry,) = cache.glob("*.pickle")
    entry.write_bytes(b"not a pickle")
    assert load_config(path).timezone
    entry.chmod(0o666)  # writable by others: never unpickled
    parses = _count_parses(monkeypatch)
    load_config(path)
    assert len(parses) == 1


def test_the_cache_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("FFCTL_CACHE_DIR", "off")
    path = tmp_path / "ffctl.toml"
    shutil.copy(EXAMPLE_CONFIG, path)
    parses = _count_parses(monkeypatch)
    load_config(path)
    load_config(path)
    assert len(parses) == 2


def test_a_config_with_a_password_in_its_database_url_is_not_copied(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FFCTL_CACHE_DIR", str(cache))
    path = tmp_path / "ffctl.toml"
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8")
    lines = [
        'url = "postgresql+psycopg://ops:s3cret@db.example/ffctl"'
        if line.strip().startswith("url") and i < 12
        else line
        for i, line in enumerate(text.splitlines())
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_config(path).database_url.endswith("@db.example/ffctl")
    assert not list(cache.glob("*.pickle"))
