"""Generate docs/cli.md, the command reference, from the commands' own help.

    python -m ffctl.commands._clidoc > docs/cli.md

tests/test_docs.py fails when docs/cli.md is out of date or a command has no help text.
"""

from __future__ import annotations

import sys

import typer


def _params(cmd) -> list[str]:
    lines = []
    for p in cmd.params:
        if p.param_type_name == "argument":
            lines.append(f"- `{(p.metavar or p.name or '').upper()}` (argument)")
        else:
            names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
            text = (getattr(p, "help", None) or "").strip()
            lines.append(f"- {names}: {text}" if text else f"- {names}")
    return lines


def _walk(cmd, path: list[str], out: list[str], missing: list[str]) -> None:
    name = " ".join(path)
    text = (cmd.help or "").strip()
    if not text:
        missing.append(name)
    out.append(f"## `{name}`\n")
    if text:
        out.append(text.split("\f")[0].replace("\b\n", "").strip() + "\n")  # \b: Click's "keep these lines"
    subs = getattr(cmd, "commands", None)
    if cmd.params and not (subs and path == ["ffctl"]):
        out.extend(_params(cmd))
        out.append("")
    if subs:
        for sub_name in cmd.list_commands(None):
            sub = cmd.get_command(None, sub_name)
            if sub is not None and not sub.hidden:
                _walk(sub, [*path, sub_name], out, missing)


LANGUAGE = """## Language

ffctl speaks English or Simplified Chinese (SPEC 9.6): `[defaults] language = "zh-CN"` (or `"en"`)
in the config; unset, the locale decides (`LC_ALL`, else `LC_MESSAGES`, else `LANG`:
`zh_CN.UTF-8` speaks Chinese), else English. It covers help, table headers, messages, errors and
hints, notifications (composed in the language of the process that queues them: the config's, so
a store's alerts speak one language), the dashboard and `ffctl demo --language zh-CN`. JSON and CSV
keys, ids, node and event names, config keys and exit codes never change. Domain words follow
`docs/glossary.md`. Translations live in `ffctl/locale/zh_CN/*.po` (one fragment per contributor),
compiled into `ffctl.mo` when the package is built or installed; after editing a fragment in a
checkout, `python hatch_build.py` compiles it again (until then ffctl warns in Chinese runs, and the
tests fail, naming the command).
"""


def generate() -> tuple[str, list[str]]:
    """The markdown, and the commands that have no help text."""
    from ffctl.cli import COMMANDS, LazyGroup, app

    root = typer.main.get_command(app)
    out = ["# Command reference\n", "Generated from `--help` by `python -m ffctl.commands._clidoc`; do not edit.\n"]
    missing: list[str] = []
    out.append("## `ffctl` (global options)\n")
    out.extend(_params(root))
    out.append("")
    out.append(LANGUAGE)
    for name in root.list_commands(None):
        cmd = LazyGroup.get_command(root, None, name)
        if not (cmd.help or "").strip():
            cmd.help = COMMANDS[name][1]
        _walk(cmd, ["ffctl", name], out, missing)
    return "\n".join(out).rstrip() + "\n", missing


if __name__ == "__main__":
    text, missing = generate()
    sys.stdout.write(text)
    if missing:
        print(f"commands without help text: {', '.join(missing)}", file=sys.stderr)
        sys.exit(1)
