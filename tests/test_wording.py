"""User text reads as English and TOML, not Python: counts agree with their nouns, booleans are
true/false, and a blank --as is refused instead of quietly becoming the OS login."""

from __future__ import annotations

from typer.testing import CliRunner


def test_a_blank_acting_user_is_refused(workspace):
    from ffctl.cli import app

    env = {"FFCTL_CONFIG": str(workspace.config_path), "FFCTL_DB": workspace.db_url}
    for blank in ("", "  "):
        r = CliRunner().invoke(app, ["--as", blank, "task", "list"], env={**env, "FFCTL_USER": None})
        assert r.exit_code == 2, r.output
        assert r.stderr == "Error: --as needs a user name; leave --as out to act as your login\n"
        assert r.stdout == ""
    r = CliRunner().invoke(app, ["task", "list"], env={**env, "FFCTL_USER": " "})
    assert r.exit_code == 2 and "FFCTL_USER is blank" in r.stderr
    r = CliRunner().invoke(app, ["--as", "alice", "task", "list", "-f", "json"], env=env)
    assert r.exit_code == 0, r.output
