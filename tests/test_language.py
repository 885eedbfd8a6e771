"""Speaking Simplified Chinese (SPEC 9.6): the catalogs, the choice of language, and what a user
sees in Chinese (tables, errors, help, notifications, the dashboard), on both backends; JSON/CSV
keys and exit codes unchanged; tables aligned at 80 columns with Chinese text."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.helpers import (
    REPO,
    ChatRobot,
    build_hook,
    cli_ok,
    flow_at,
    flow_history,
    glossary,
    has_cjk,
    import_csv,
    marked_messages,
    placeholders,
)

FRAGMENTS = REPO / "ffctl" / "locale" / "zh_CN"
REBUILD = ".venv/bin/python hatch_build.py"


# --- the catalogs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fragments():
    """{msgid: [(fragment file, line, translation), ...]} over every zh_CN fragment."""
    from babel.messages.pofile import read_po

    found = defaultdict(list)
    for path in sorted(FRAGMENTS.glob("*.po")):
        with open(path, "rb") as fp:
            for message in read_po(fp, locale="zh_CN"):
                if message.id and not message.fuzzy:
                    key = message.id if isinstance(message.id, str) else tuple(message.id)
                    found[key].append((path.relative_to(REPO), message.lineno, message.string))
    return found


def _strings(translation) -> list[str]:
    return list(translation) if isinstance(translation, (list, tuple)) else [translation]


def test_every_marked_message_has_a_chinese_translation(fragments):
    missing = {}
    for message, where, line in marked_messages():
        key = message if isinstance(message, str) else tuple(message)
        if not any(any(_strings(t)) for _f, _l, t in fragments.get(key, [])):
            missing.setdefault(key, f"{where}:{line}")
    assert not missing, (
        f"{len(missing)} marked messages have no zh_CN translation in ffctl/locale/zh_CN/*.po "
        "(add them to your fragment):\n" + "\n".join(f"{w}: {m!r}" for m, w in missing.items())
    )


def test_no_message_is_translated_two_ways(fragments):
    clashes = [
        f"{msgid!r}:\n" + "\n".join(f"    {f}:{line}: {t!r}" for f, line, t in places)
        for msgid, places in fragments.items()
        if len({tuple(_strings(t)) for _f, _l, t in places if any(_strings(t))}) > 1
    ]
    assert not clashes, "the same message is translated differently in two fragments (agree on one):\n" + "\n".join(
        clashes
    )


def test_translations_keep_the_placeholders(fragments):
    wrong = []
    for msgid, places in fragments.items():
        wanted = placeholders(msgid[-1] if isinstance(msgid, tuple) else msgid)  # the plural form carries the count
        for f, line, translation in places:
            for text in _strings(translation):
                if text and placeholders(text) != wanted:
                    wrong.append(f"{f}:{line}: {msgid!r} has {wanted}, the translation {placeholders(text)}")
    assert not wrong, "a translation must keep its message's {placeholders}:\n" + "\n".join(wrong)


def test_domain_words_follow_the_glossary(fragments):
    rows = [(forms, term) for forms, term, checked in glossary() if checked]
    assert len(rows) >= 20 and (("breach", "breaches", "breached"), "超时") in rows
    off = []
    for msgid, places in fragments.items():
        english = " ".join(msgid) if isinstance(msgid, tuple) else msgid
        english = re.sub(
            r"`[^`]*`|\bffctl(?: [a-z][\w-]*)+|--[\w-]+|\[[\w.]+\]", "", english
        )  # commands, options, sections
        for forms, term in rows:
            if re.search(r"\b(" + "|".join(re.escape(f) for f in forms) + r")\b", english, re.IGNORECASE):
                for f, line, translation in places:
                    for text in _strings(translation):
                        if text and term not in text:
                            off.append(f"{f}:{line}: {english!r} says {forms[0]!r}: use {term} ({text!r})")
    assert not off, "translate domain words as docs/glossary.md says:\n" + "\n".join(off)


def test_the_compiled_catalog_is_the_fragments(fragments):
    """The catalog gettext loads is what the fragments say now (not compiled before an edit)."""
    import gettext

    from ffctl import i18n

    hook = build_hook()
    merged, _conflicts = hook.merge("zh_CN", sorted(FRAGMENTS.glob("*.po")))
    path = i18n.CATALOGS["zh-CN"]
    assert path.exists(), f"{path} was never built: run `{REBUILD}` (pip install -e . builds it too)"
    with open(path, "rb") as fp:
        compiled = gettext.GNUTranslations(fp)
    stale = [
        m.id
        for m in merged
        if m.id
        and (
            compiled.gettext(m.id) != m.string if isinstance(m.id, str) else compiled.ngettext(*m.id, 5) != m.string[0]
        )
    ]
    assert not stale, (
        f"{path.relative_to(REPO)} is older than the fragments ({len(stale)} messages differ, "
        f"e.g. {stale[0]!r}): run `{REBUILD}`"
    )


def test_the_build_compiles_every_fragment_into_one_catalog(tmp_path):
    import gettext
    import shutil

    hook = build_hook()
    shutil.copytree(
        REPO / "ffctl" / "locale", tmp_path / "ffctl" / "locale", ignore=shutil.ignore_patterns("LC_MESSAGES")
    )
    (tmp_path / "ffctl" / "locale" / "zh_CN" / "zz_test.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        'msgid "a test message"\nmsgstr "测试消息"\n',
        encoding="utf-8",
    )
    written = hook.compile_catalogs(tmp_path, say=lambda text: None)
    assert [p.relative_to(tmp_path).as_posix() for p in written] == ["ffctl/locale/zh_CN/LC_MESSAGES/ffctl.mo"]
    with open(written[0], "rb") as fp:
        catalog = gettext.GNUTranslations(fp)
    assert catalog.gettext("a test message") == "测试消息"
    assert catalog.gettext("Error: {message}") == "错误：{message}"  # another fragment's message, same file


# --- choosing the language ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "variables, expected",
    [
        ({"LANG": "zh_CN.UTF-8"}, "zh-CN"),
        ({"LANG": "zh_CN.GB18030"}, "zh-CN"),
        ({"LC_ALL": "zh_CN.utf8", "LANG": "en_US.UTF-8"}, "zh-CN"),
        ({"LC_ALL": "C.UTF-8", "LANG": "zh_CN.UTF-8"}, "en"),  # LC_ALL decides when set, as POSIX has it
        ({"LC_MESSAGES": "zh_SG.UTF-8"}, "zh-CN"),
        ({"LANG": "zh_TW.UTF-8"}, "en"),  # Traditional Chinese: not this catalog
        ({"LANG": "en_GB.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_the_locale_variables_choose_the_language(variables, expected):
    from ffctl.i18n import language_from_env

    assert language_from_env(variables) == expected


def test_an_unknown_language_in_the_config_names_the_allowed_ones(workspace):
    text = workspace.config_path.read_text(encoding="utf-8")
    workspace.config_path.write_text(text.replace('# language = "zh-CN"', 'language = "zh_CN"'), encoding="utf-8")
    r = workspace.run("config", "check")
    assert r.exit_code == 2
    assert "defaults.language" in r.stderr and "zh_CN" in r.stderr and "zh-CN" in r.stderr


def _speak(ws, how: str) -> dict:
    """Chinese by ``[defaults] language`` in the config, or by LANG (returns the run() keywords)."""
    if how == "config":
        text = ws.config_path.read_text(encoding="utf-8")
        assert '# language = "zh-CN"' in text
        ws.config_path.write_text(text.replace('# language = "zh-CN"', 'language = "zh-CN"'), encoding="utf-8")
        return {}
    return {"lang": "zh_CN.UTF-8"}


HOW = ["config", "LANG"]


def _ffctl(*args, env=None, cwd=None):
    """ffctl as a fresh process (help texts are evaluated when a command module is imported)."""
    base = {k: v for k, v in os.environ.items() if k not in ("LC_ALL", "LC_MESSAGES", "LANG", "FFCTL_CONFIG")}
    return subprocess.run(
        [sys.executable, "-m", "ffctl", *args],
        capture_output=True,
        text=True,
        env={**base, "LANG": "C.UTF-8", **(env or {})},
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize("how", HOW)
def test_help_is_in_chinese_and_loads_no_sqlalchemy(tmp_path, how):
    env = {"LANG": "zh_CN.UTF-8"} if how == "LANG" else {}
    if how == "config":
        (tmp_path / "ffctl.toml").write_text('[defaults]\nlanguage = "zh-CN"\n', encoding="utf-8")
    top = _ffctl("--help", env=env, cwd=tmp_path)
    assert top.returncode == 0, top.stderr
    assert "履约运营" in top.stdout and "命令" in top.stdout and "演示" in top.stdout
    # Click's and Typer's own words come from click.po through the global gettext
    assert (
        "用法：" in top.stdout
        and "选项" in top.stdout
        and "环境变量：FFCTL_CONFIG" in top.stdout
        and "默认：" in top.stdout
    )
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from ffctl.cli import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('sqlalchemy' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "LC_ALL": "", "LANG": "zh_CN.UTF-8"},
    )
    assert probe.stdout.strip().endswith("False"), probe.stdout + probe.stderr
    demo = _ffctl("demo", "--help", env=env, cwd=tmp_path)
    assert "构建演示数据库" in demo.stdout and "显示此帮助并退出" in demo.stdout
    report = _ffctl("report", "--help", env=env, cwd=tmp_path)
    assert report.returncode == 0 and has_cjk(report.stdout), report.stdout
    (tmp_path / "elsewhere").mkdir()
    english = _ffctl("--help", cwd=tmp_path / "elsewhere")
    assert "Fulfillment operations" in english.stdout and not has_cjk(english.stdout)


# --- what a user sees --------------------------------------------------------------------------------


@pytest.fixture
def shop(workspace):
    flow_history(workspace)
    return workspace


@pytest.mark.parametrize("how", HOW)
def test_task_list_and_report_kpi_speak_chinese(shop, how):
    kw = _speak(shop, how)
    tasks = cli_ok(
        shop, "task", "list", "--all", "--format", "table", now=flow_at("12:30", "2026-12-03T"), user="judy", **kw
    ).stdout
    assert "订单" in tasks and "节点" in tasks and "截止时间" in tasks, tasks
    assert "X1" in tasks and "credit_review" in tasks  # ids and node names stay as they are
    kpi = cli_ok(shop, "report", "kpi", "--format", "table", now=flow_at("12:30", "2026-12-03T"), **kw).stdout
    assert has_cjk(kpi.splitlines()[0]) and "on_time_shipping" in kpi, kpi
    assert "Fulfillment KPIs" not in kpi


@pytest.mark.parametrize("how", HOW)
def test_an_error_and_its_hint_speak_chinese(shop, how):
    english = shop.run("order", "hold", "NO-SUCH-ORDER", "--reason", "盘点")
    kw = _speak(shop, how)
    r = shop.run("order", "hold", "NO-SUCH-ORDER", "--reason", "盘点", **kw)
    assert r.exit_code == english.exit_code == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith("错误：") and "NO-SUCH-ORDER" in lines[0], r.stderr
    assert any(line.startswith("提示：") for line in lines[1:]), r.stderr
    assert english.stderr.startswith("Error: ")


@pytest.mark.parametrize("how", HOW)
def test_the_dashboard_speaks_chinese(shop, how, tmp_path):
    kw = _speak(shop, how)
    out = tmp_path / "kpi.html"
    cli_ok(shop, "report", "dashboard", "--out", out, now=flow_at("12:30", "2026-12-03T"), **kw)
    html = out.read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in html
    for words in ("履约看板", "各节点时限达成率", "各角色工作量", "订单流转", "节点明细", "瓶颈"):
        assert words in html, words
    assert "Fulfillment dashboard" not in html and "Nodes in detail" not in html
    assert "credit_review" in html  # node names are ids: never translated


ROBOT_CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
{language}
[roles.ops]
members = ["ann"]
dingtalk = {{ url_env = "FFCTL_TEST_DINGTALK_URL" }}
[users.ann]
[workflows.main]
match = {{}}
nodes = ["review"]
[nodes.review]
owner = "ops"
sla = "1h"
[notify]
webhook_timeout_seconds = 3
"""


@pytest.mark.parametrize("how", HOW)
def test_a_group_chat_alert_speaks_chinese(workspace_with_config, how, monkeypatch):
    """An at-risk order reaches the team's DingTalk robot (a real HTTP server) in Chinese: a
    notification is composed in the config's language (or the sweeping process's LANG)."""
    robot = ChatRobot("dingtalk")
    try:
        monkeypatch.setenv("FFCTL_TEST_DINGTALK_URL", f"{robot.base}/robot/send?access_token=t")
        ws = workspace_with_config(ROBOT_CONFIG.format(language='language = "zh-CN"' if how == "config" else ""))
        kw = {} if how == "config" else {"lang": "zh_CN.UTF-8"}
        import_csv(ws, "products", "sku,name\nA,螺栓\n", now="2026-03-02T09:00:00+08:00")
        import_csv(ws, "customers", "customer,name,region\nC1,上海宏达机械厂,east\n", now="2026-03-02T09:00:00+08:00")
        import_csv(
            ws,
            "orders",
            "order_id,line_no,customer,sku,qty,created_at\nSO-000001,1,C1,A,1,2026-03-02 09:00\n",
            now="2026-03-02T09:00:00+08:00",
        )
        cli_ok(ws, "sla", "sweep", now="2026-03-02T10:30:00+08:00", **kw)
        cli_ok(ws, "notify", "send", now="2026-03-02T10:30:00+08:00", **kw)
        posts = robot.delivered()
        assert posts, robot.received
        text = posts[0]["json"]["markdown"]["text"]
        assert "SO-000001" in text and has_cjk(text.replace("上海宏达机械厂", "").replace("螺栓", "")), text
        assert posts[0]["json"]["msgtype"] == "markdown"  # the vendor's format is not translated
    finally:
        robot.stop()


# --- what stays the same -----------------------------------------------------------------------------


def _csv_header(text: str) -> list[str]:
    return next(csv.reader(io.StringIO(text)))


def _keys(doc) -> list:
    rows = doc if isinstance(doc, list) else [doc]
    return [sorted(row) if isinstance(row, dict) else row for row in rows]


def test_json_and_csv_keys_ids_and_exit_codes_do_not_change(shop):
    at = flow_at("12:30", "2026-12-03T")
    zh = {"lang": "zh_CN.UTF-8"}
    for args in (
        ("task", "list", "--all"),
        ("report", "kpi"),
        ("report", "sla"),
        ("order", "list"),
        ("report", "workload"),
    ):
        en_json, zh_json = (
            cli_ok(shop, *args, "--format", "json", now=at, user="judy", **kw).stdout for kw in ({}, zh)
        )
        assert _keys(json.loads(en_json)) == _keys(json.loads(zh_json)), args
        assert [
            r.get("order_id") or r.get("kpi") or r.get("node") for r in json.loads(zh_json) if isinstance(r, dict)
        ] == [r.get("order_id") or r.get("kpi") or r.get("node") for r in json.loads(en_json) if isinstance(r, dict)]
        en_csv, zh_csv = (cli_ok(shop, *args, "--format", "csv", now=at, user="judy", **kw).stdout for kw in ({}, zh))
        assert _csv_header(en_csv) == _csv_header(zh_csv), args
    for args in (("order", "show", "NOPE"), ("advance", "X1", "--node", "no_such_node"), ("task", "list", "--bad")):
        assert shop.run(*args, now=at).exit_code == shop.run(*args, now=at, **zh).exit_code, args


#: customer keys as a marketplace export has them: Chinese, and as wide as an ASCII one of twice the length
CUSTOMERS = """customer,name,region
上海宏达机械制造,上海宏达机械制造有限公司华东分公司,华东
C-B,Western Goods,west
"""


def test_tables_stay_aligned_at_80_columns_with_chinese_text(workspace):
    from rich.cells import cell_len

    ws = workspace
    at = "2026-12-02T09:05:00+08:00"
    import_csv(ws, "products", "sku,name,category\nA,六角螺栓,零件\n", now=at)
    import_csv(ws, "customers", CUSTOMERS, now=at)
    import_csv(
        ws,
        "orders",
        "order_id,line_no,customer,sku,qty,channel,created_at\n"
        "SO-1,1,上海宏达机械制造,A,1,web,2026-12-02 09:00\nSO-2,1,C-B,A,1,web,2026-12-02 09:00\n",
        now=at,
    )
    for columns in (80, 120):
        for args in (("task", "list", "--all"), ("order", "list")):
            out = cli_ok(
                ws, *args, "--format", "table", now=at, user="judy", lang="zh_CN.UTF-8", columns=columns
            ).stdout
            lines = [line for line in out.splitlines() if line.strip()]
            assert has_cjk(lines[0] + lines[1]), out  # the header is in Chinese
            # Rich pads every line of a table to the table's width in terminal cells (a Chinese
            # character takes two): a header or a cell padded by len() would stick out
            assert {cell_len(line) for line in lines} == {cell_len(lines[0])} and cell_len(lines[0]) <= columns, out
            rows = [line for line in lines if re.search(r"\bSO-[12]\b", line)]
            assert len(rows) == 2, out
            # the two rows differ only in the customer (12 cells against 3) when it is shown:
            # every cell after it starts at the same terminal column on both rows
            starts = [[cell_len(line[: m.start()]) for m in re.finditer(r"(?<!\S)\S", line)] for line in rows]
            assert starts[0] == starts[1], out
            if columns == 120:
                assert "上海宏达机械制造" in rows[0], out


def test_demo_runs_in_chinese(tmp_path):
    from typer.testing import CliRunner

    from ffctl.cli import app

    folder = tmp_path / "demo"
    r = CliRunner().invoke(
        app,
        ["demo", "--dir", str(folder), "--orders", "20", "--days", "1", "--language", "zh-CN"],
        env={"LANG": "C.UTF-8", "LC_ALL": None, "FFCTL_CONFIG": None},
    )
    assert r.exit_code == 0, r.output
    assert "正在" in r.stderr and "构建演示数据库" in r.stderr and "接下来可以试试" in r.stderr, r.stderr
    assert 'language = "zh-CN"' in (folder / "ffctl.toml").read_text(encoding="utf-8")
