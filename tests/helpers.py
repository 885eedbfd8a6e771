"""Helpers for tests: driving ffctl through its CLI the way a user would (imports, then commands),
real parts on loopback (an SMTP server, with TLS if asked, and a self-signed certificate for it;
an HTTP server for webhooks), the import tests' masters and calls, and reading which orders a
message names."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import socket
import ssl
import subprocess
import sys
import threading
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa

SUPPLIERS = "supplier,name\nSUP-1,华东紧固件有限公司\n"
PRODUCTS = (
    "sku,name,category,safety_stock,supplier\n"
    "SKU-0001,六角螺栓 M8,fasteners,0,SUP-1\n"
    "SKU-0002,不锈钢垫圈 M8,fasteners,0,SUP-1\n"
)
CUSTOMERS = (
    "customer,name,region,tier,sales_rep\nC-EAST,上海宏达机械厂,east,gold,oscar\nC-WEST,Western Goods,west,silver,\n"
)
STOCK = "sku,warehouse,on_hand\nSKU-0001,WH-SH,100\nSKU-0002,WH-SH,10\n"


def cli_ok(ws, *args, now: str | None = None, user: str | None = None, **run):
    """Run a command that must succeed; returns the result (``run``: more of Workspace.run's keywords)."""
    r = ws.run(*args, now=now, user=user, **run)
    assert r.exit_code == 0, f"ffctl {' '.join(map(str, args))}: exit {r.exit_code}\n{r.stdout}\n{r.stderr}"
    return r


def cli_json(ws, *args, now: str | None = None, user: str | None = None):
    return json.loads(cli_ok(ws, *args, "--format", "json", now=now, user=user).stdout)


def import_csv(ws, kind: str, text: str, *, now: str | None = None) -> None:
    path = ws.write(f"{kind}.csv", text)
    cli_ok(ws, "import", kind, path, now=now)


def open_shop(ws, *, now: str | None = None, stock: str = STOCK) -> None:
    """Suppliers, two products, an eastern (pilot workflow for b2b) and a western customer, stock."""
    for kind, text in (("suppliers", SUPPLIERS), ("products", PRODUCTS), ("customers", CUSTOMERS), ("stock", stock)):
        import_csv(ws, kind, text, now=now)


def python_c(code: str, *, cwd=None, check: bool = False) -> subprocess.CompletedProcess:
    """``code`` run by a fresh interpreter (``python -c``), its output as text: what a new
    process imports and does, apart from the test process's own state."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=check)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed_certificate(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A certificate for ``host`` (an IP address or a name) signed by itself: (cert.pem, key.pem).

    A client trusts it only when told to (``ca_file``): the system's CAs never signed it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


class SmtpServer:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps what it receives and who logged in.

    ``tls``: None (plain), "starttls" (offers STARTTLS and refuses a login before it) or
    "implicit" (TLS from the first byte, as on port 465); ``cert`` is (cert.pem, key.pem).
    """

    def __init__(
        self, *, password: str | None = None, tls: str | None = None, cert: tuple[Path, Path] | None = None
    ) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list = []
        self.logins: list = []  # (login, accepted, over TLS)

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = password is not None and auth_data.password == password.encode()
            over_tls = server.transport.get_extra_info("ssl_object") is not None
            self.logins.append((auth_data.login.decode(), ok, over_tls))
            return AuthResult(success=ok)

        kwargs: dict = {}
        if password is not None:
            # implicit TLS: aiosmtpd knows only STARTTLS as "TLS", but the socket is encrypted from the start
            kwargs.update(authenticator=authenticate, auth_require_tls=tls == "starttls")
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*cert)
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                kwargs.update(ssl_context=context)
        self.port = free_port()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's naming
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"

    def stop(self) -> None:
        self.controller.stop()


# --- the import tests: their masters and CLI calls ---------------------------------------------

NOW = "2026-11-25T10:00:00+08:00"

IMPORT_SUPPLIERS = "supplier,name,inspection_exempt\nS1,华东供应,yes\nS2,Beta Parts,no\n"
IMPORT_PRODUCTS = (
    "sku,name,category,supplier,custom,lead_time_days,safety_stock\n"
    "A1,Widget,tools,S1,no,3,5\n"
    "A2,定制件,custom,S2,yes,5,\n"
    "A3,Thing,tools,,,,\n"
)
IMPORT_CUSTOMERS = (
    "customer,name,tier,region,sales_rep,credit_limit\n"
    "C1,张三贸易有限公司,gold,east,alice,50000\n"
    "C2,Beta Co,silver,华南,,\n"
)

# A config whose only workflow goes straight to dispatch, so that imported orders can ship.
QUICK_CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
[roles.warehouse]
members = ["frank"]
[workflows.quick]
match = {}
nodes = ["dispatch"]
[nodes.dispatch]
owner = "warehouse"
sla = "48h"
auto = "ship"
"""


def run(ws, *args, now=NOW):
    return ws.run("import", *[str(a) for a in args], now=now)


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def query(ws, text, **params):
    store = ws.store()
    try:
        with store.session() as s:
            return [tuple(r) for r in s.execute(sa.text(text), params)]
    finally:
        store.dispose()


def scalar(ws, text, **params):
    return query(ws, text, **params)[0][0]


def masters(ws):
    ok(run(ws, "suppliers", ws.write("suppliers.csv", IMPORT_SUPPLIERS)))
    ok(run(ws, "products", ws.write("products.csv", IMPORT_PRODUCTS)))
    ok(run(ws, "customers", ws.write("customers.csv", IMPORT_CUSTOMERS)))


# --- webhooks, and what a message names ----------------------------------------------------------


class Hooks:
    """A real HTTP server on loopback: records POSTs; ``status`` makes it fail on purpose."""

    def __init__(self) -> None:
        self.received: list[tuple[dict, dict]] = []
        self.status = 200
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hooks.status == 200:
                    hooks.received.append((dict(self.headers), json.loads(body)))
                self.send_response(hooks.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ChatRobot:
    """A real HTTP server on loopback standing in for a chat robot (WeCom, DingTalk, Feishu, Slack):
    records each POST (path, query, headers, raw body, JSON) and answers ``answer`` (status, body),
    which a test changes to play an outage or an in-band error."""

    OK = {
        "wecom": (200, b'{"errcode":0,"errmsg":"ok"}'),
        "dingtalk": (200, b'{"errcode":0,"errmsg":"ok"}'),
        "feishu": (200, b'{"code":0,"data":{},"msg":"success"}'),
        "slack": (200, b"ok"),
        "webhook": (200, b""),
    }

    def __init__(self, vendor: str = "webhook") -> None:
        from urllib.parse import parse_qs, urlsplit

        self.received: list[dict] = []
        self.answer = self.OK[vendor]
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                parts = urlsplit(self.path)
                status, body = robot.answer
                robot.received.append(
                    {
                        "path": parts.path,
                        "query": {k: v[0] for k, v in parse_qs(parts.query).items()},
                        "raw_query": parts.query,
                        "headers": dict(self.headers),
                        "raw": raw,
                        "json": json.loads(raw),
                        "answered": status,
                        "ok": (status, body) == robot.OK[vendor],
                    }
                )
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self) -> list[dict]:
        """The posts the robot accepted."""
        return [r for r in self.received if r["ok"]]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


ORDER_ID = re.compile(r"\b[A-Z]+-\d{6}\b")  # the ids tests give orders: SO-000001, AP-000012, ...


def orders_named(*texts: str) -> set[str]:
    """The order ids a message names (in its subject, body, ...)."""
    return {found for text in texts for found in ORDER_ID.findall(text or "")}


def messages(store) -> list[tuple]:
    """Every outbox row as (recipient, channel, subject, body, next_attempt_at), in queue order."""
    import sqlalchemy as sa

    from ffctl.core.models import Notification as N

    with store.session() as s:
        return [
            tuple(r)
            for r in s.execute(
                sa.select(N.recipient, N.channel, N.subject, N.body, N.next_attempt_at).order_by(N.id)
            ).all()
        ]


# --- the breach forecast's stores (tests/test_forecast.py) -------------------------------------------

FORECAST_CONFIG = """
[defaults]
timezone = "UTC"

[roles.clerk]
members = ["ann"]
escalate_to = "lead"
[roles.lead]
members = ["ben"]
[roles.admin]
members = ["root"]
[users.ann]
email = "ann@example.com"
[users.ben]
email = "ben@example.com"

[workflows.main]
match = {}
nodes = ["review", "pack"]

[nodes.review]
owner = "clerk"
sla = "1h"
warn_at = 0.75
escalation = [ { after = "0m", action = "remind" } ]
[nodes.pack]
owner = "lead"
sla = "2h"

[forecast]
window = "30d"
min_history = 20

[notify]
log = "notifications.jsonl"
"""


def enter_orders(store, cfg, ids: list[str], at) -> None:
    """Orders ``ids`` for one customer, created and entered into their workflow at ``at``."""
    from ffctl.core import workflow
    from ffctl.core.models import Customer, Order
    from ffctl.core.store import insert_or_ignore

    with store.session(write=True) as s:
        insert_or_ignore(s, Customer, [{"customer": "c1", "name": "Customer One", "region": "west"}], ["customer"])
        s.execute(
            sa.insert(Order), [{"order_id": i, "customer": "c1", "created_at": at, "channel": "web"} for i in ids]
        )
        workflow.enter_orders(s, cfg, workflow.order_facts(s, ids), actor="test")


def complete_order_task(store, cfg, order_id: str, at) -> None:
    from ffctl.core import workflow

    with store.session(write=True) as s:
        workflow.complete(s, cfg, order_id, at=at, actor="root")


def review_history(store, cfg, start, minutes: list[float], prefix: str = "H", gap=dt.timedelta(hours=1)) -> list[str]:
    """One past review visit per entry of ``minutes`` (how long it took), ``gap`` apart from ``start``."""
    ids = []
    for n, took in enumerate(minutes):
        oid = f"{prefix}-{n:04d}"
        at = start + gap * n
        enter_orders(store, cfg, [oid], at)
        complete_order_task(store, cfg, oid, at + dt.timedelta(minutes=took))
        ids.append(oid)
    return ids


# --- a small process history for the process-mining export and the flow report -----------------

FLOW_DAY = "2026-12-02T"


def flow_at(hhmm: str, day: str = FLOW_DAY) -> str:
    return f"{day}{hhmm}:00+08:00"


def flow_history(ws) -> None:
    """Orders through the example config's workflows, driven as users would (Asia/Shanghai):

    - P1 (pilot): credit_review -> allocation -> dispatch, shipped and delivered;
    - CH1 (standard, no custom items: tech_confirm skipped): ... wave_pick -> pack_check, which
      rejects it back to wave_pick (a reason with characters CSV, XML and JSON must carry), then
      wave_pick -> pack_check -> dispatch, shipped;
    - CH2 (standard, two lines): credit_review done, waits at allocation (not enough B);
    - X1 (standard), created the next day: still at credit_review.
    """
    for name, text in (
        ("products", "sku,name,category\nA,Widget,parts\nB,Bolt <M8>,parts\n"),
        ("customers", "customer,name,region\nC1,客户一,east\nC2,Western,west\n"),
        ("stock", "sku,warehouse,on_hand\nA,WH1,100\nB,WH1,1\n"),
        (
            "orders",
            "order_id,line_no,customer,sku,qty,channel,created_at\n"
            "P1,1,C1,A,2,b2b,2026-12-02 09:00\n"
            "CH1,1,C2,A,1,web,2026-12-02 09:01\n"
            "CH2,1,C2,A,1,web,2026-12-02 09:02\n"
            "CH2,2,C2,B,5,web,2026-12-02 09:02\n",
        ),
    ):
        import_csv(ws, name, text, now=flow_at("09:05"))
    judy = {"user": "judy"}
    cli_ok(ws, "advance", "P1", now=flow_at("09:10"), **judy)
    cli_ok(ws, "advance", "CH1", now=flow_at("09:20"), **judy)
    cli_ok(ws, "advance", "CH2", now=flow_at("09:25"), **judy)
    cli_ok(ws, "allocate", "P1", "CH1", "CH2", now=flow_at("09:30"), **judy)
    cli_ok(ws, "advance", "CH1", now=flow_at("10:00"), **judy)  # wave_pick
    cli_ok(ws, "advance", "CH1", "--reject", "--reason", '=short "2" <box> & tape', now=flow_at("10:30"), **judy)
    cli_ok(ws, "advance", "CH1", now=flow_at("11:00"), **judy)  # wave_pick again
    cli_ok(ws, "advance", "CH1", now=flow_at("11:30"), **judy)  # pack_check
    cli_ok(ws, "ship", "P1", "--carrier", "SF", "--tracking", "T1", now=flow_at("12:00"), **judy)
    cli_ok(ws, "ship", "CH1", "--carrier", "SF", now=flow_at("13:00"), **judy)
    cli_ok(ws, "deliver", "P1", now=flow_at("18:00"), **judy)
    import_csv(
        ws,
        "orders",
        "order_id,line_no,customer,sku,qty,channel,created_at\nX1,1,C2,A,1,web,2026-12-03 09:00\n",
        now=flow_at("09:05", "2026-12-03T"),
    )


def open_orders(session, cfg, orders, *, at, customer: str = "C1", region: str = "north") -> None:
    """Store-level set-up for report tests: each SKU stocked (100 in WH1), the customer, and
    ``orders`` ((order_id, [(sku, qty), ...], minutes before ``at`` it was created)) entered into
    their workflow at credit_review. Skips what an earlier call already stored."""
    from ffctl.core import workflow
    from ffctl.core.models import Customer, Order, OrderLine, Product, Stock

    if session.get(Customer, customer) is None:
        session.add(Customer(customer=customer, name=f"Customer {customer}", region=region))
    for sku in sorted({sku for _, lines, _ in orders for sku, _ in lines}):
        if session.get(Product, sku) is None:
            session.add(Product(sku=sku, name=f"Product {sku}", safety_stock=0))
            session.flush()
            session.add(Stock(sku=sku, warehouse="WH1", on_hand=100))
    session.flush()
    for order_id, lines, minutes in orders:
        session.add(
            Order(
                order_id=order_id,
                customer=customer,
                channel="web",
                region=region,
                priority=0,
                created_at=at - dt.timedelta(minutes=minutes),
            )
        )
        session.flush()
        for n, (sku, qty) in enumerate(lines, start=1):
            session.add(OrderLine(order_id=order_id, line_no=n, sku=sku, qty=qty))
    session.flush()
    workflow.enter_orders(session, cfg, workflow.order_facts(session, [o[0] for o in orders]), actor="tester")
    session.expire_all()


# --- partial shipments: a shop whose orders go allocation -> dispatch ----------------------------

SHIP_CONFIG = """
[defaults]
timezone = "Asia/Shanghai"
[roles.warehouse]
members = ["frank"]
[workflows.main]
match = {}
nodes = ["allocation", "dispatch"]
[nodes.allocation]
sla = "10m"
auto = "allocate"
[nodes.dispatch]
owner = "warehouse"
sla = "48h"
auto = "ship"
"""
SHIP_NOW = "2026-11-23T09:00:00+08:00"


def shop_at_dispatch(ws, orders: str, *, stock: str = STOCK) -> None:
    """Masters, stock and ``orders`` (CSV text) imported and allocated: what could be reserved
    waits at dispatch."""
    open_shop(ws, now=SHIP_NOW, stock=stock)
    import_csv(ws, "orders", orders, now=SHIP_NOW)
    cli_ok(ws, "allocate", "--all", now=SHIP_NOW)


def stock_row(ws, sku: str, warehouse: str = "WH-SH") -> tuple:
    """(on_hand, allocated) of a stock row."""
    store = ws.store()
    try:
        with store.session() as s:
            return tuple(
                s.execute(
                    sa.text("SELECT on_hand, allocated FROM stock WHERE sku = :s AND warehouse = :w"),
                    {"s": sku, "w": warehouse},
                ).one()
            )
    finally:
        store.dispose()


def spawn_ffctl(ws, *args: str, now: str, user: str = "frank"):
    """A real ffctl process on the workspace's store (concurrency tests)."""
    import os
    import subprocess
    import sys

    env = dict(
        os.environ, FFCTL_CONFIG=str(ws.config_path), FFCTL_DB=ws.db_url, FFCTL_USER=user, FFCTL_NOW=now, COLUMNS="200"
    )
    env.pop("FFCTL_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "ffctl", *args],
        env=env,
        cwd=ws.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- stock: a store built the way imports would -------------------------------------------------

STOCK_NOW = dt.datetime(2026, 11, 2, 2, 0, tzinfo=dt.timezone.utc)  # 10:00 Monday in Asia/Shanghai
STOCK_TZ = "Asia/Shanghai"


# --- stock store builders (test_stock, test_allocate, test_ship, test_allocate_concurrency) ------


def seed(session, *, products=(), stock=(), receipts=(), customers=("C1",)):
    """products: sku or (sku, lead_time_days); stock: (sku, wh, on_hand); receipts: (id, sku, wh, qty, expected_at)."""
    from ffctl.core.models import Customer, Product, Receipt, Stock

    for c in customers:
        session.add(Customer(customer=c, name=f"Customer {c}", region="north"))
    for p in products:
        sku, lead = (p, None) if isinstance(p, str) else p
        session.add(Product(sku=sku, name=f"Product {sku}", lead_time_days=lead, safety_stock=2))
    session.flush()
    for sku, wh, n in stock:
        session.add(Stock(sku=sku, warehouse=wh, on_hand=n))
    for rid, sku, wh, qty, expected in receipts:
        session.add(Receipt(receipt_id=rid, sku=sku, warehouse=wh, qty=qty, expected_at=expected))
    session.flush()


def add_orders(session, cfg, orders, *, at=STOCK_NOW, to_allocation=True, actor="tester"):
    """orders: (order_id, priority, [(sku, qty), ...]) or with a 4th item, promised_ship_date.

    The orders enter their workflow (credit_review first) and, with ``to_allocation``, credit review
    is completed so they wait at the allocation node.
    """
    from ffctl.core import workflow
    from ffctl.core.models import Order, OrderLine

    facts = []
    for i, spec in enumerate(orders):
        order_id, priority, lines = spec[0], spec[1], spec[2]
        promised = spec[3] if len(spec) > 3 else None
        created = at - dt.timedelta(minutes=len(orders) - i)
        session.add(
            Order(
                order_id=order_id,
                customer="C1",
                channel="web",
                region="north",
                priority=priority,
                created_at=created,
                promised_ship_date=promised,
            )
        )
        session.flush()
        for n, (sku, qty) in enumerate(lines, start=1):
            session.add(OrderLine(order_id=order_id, line_no=n, sku=sku, qty=qty))
        facts.append(order_id)
    session.flush()
    workflow.enter_orders(session, cfg, workflow.order_facts(session, facts), actor=actor)
    if to_allocation:
        for order_id in facts:
            workflow.complete(session, cfg, order_id, at=at, actor=actor, node="credit_review")
    session.expire_all()


def check_invariants(session):
    """Never oversold, and every reservation is accounted for on both sides."""
    bad = session.execute(
        sa.text(
            "SELECT sku, warehouse, on_hand, allocated FROM stock "
            "WHERE allocated > on_hand OR allocated < 0 OR on_hand < 0"
        )
    ).all()
    assert not bad, f"oversold: {bad}"
    by_stock = session.execute(
        sa.text(
            "SELECT s.sku, s.warehouse, s.allocated, COALESCE(SUM(a.qty), 0) FROM stock s "
            "LEFT JOIN allocation a ON a.sku = s.sku AND a.warehouse = s.warehouse "
            "GROUP BY s.id, s.sku, s.warehouse, s.allocated HAVING s.allocated <> COALESCE(SUM(a.qty), 0)"
        )
    ).all()
    assert not by_stock, f"stock.allocated differs from its reservations: {by_stock}"
    orphans = session.execute(
        sa.text(
            "SELECT a.sku, a.warehouse FROM allocation a LEFT JOIN stock s ON s.sku = a.sku "
            "AND s.warehouse = a.warehouse WHERE s.id IS NULL"
        )
    ).all()
    assert not orphans
    by_line = session.execute(
        sa.text(
            "SELECT l.order_id, l.line_no, l.allocated - l.shipped, COALESCE(SUM(a.qty), 0) FROM order_line l "
            "JOIN orders o ON o.order_id = l.order_id LEFT JOIN allocation a ON a.line_id = l.id "
            "WHERE o.status IN ('open', 'on_hold', 'cancelled') "
            "GROUP BY l.id, l.order_id, l.line_no, l.allocated, l.shipped "
            "HAVING l.allocated - l.shipped <> COALESCE(SUM(a.qty), 0)"
        )
    ).all()
    assert not by_line, f"order_line.allocated differs from its reservations: {by_line}"
    over = session.execute(
        sa.text("SELECT id FROM order_line WHERE allocated + cancelled > qty OR shipped > allocated")
    ).all()
    assert not over


def stock_of(session, sku, wh):
    return session.execute(
        sa.text("SELECT on_hand, allocated FROM stock WHERE sku = :s AND warehouse = :w"), {"s": sku, "w": wh}
    ).one()


def events(session, kind):
    return session.execute(
        sa.text("SELECT order_id, subject, detail FROM event WHERE event = :e ORDER BY id"), {"e": kind}
    ).all()


# --- workflow: orders entered with the example config (test_workflow, test_advance, test_order_cli, test_task_cli)

WORKFLOW_TZ = "Asia/Shanghai"  # the example config's office calendar


def workflow_time(text: str) -> dt.datetime:
    """A local Shanghai time like '2026-11-23 09:00'."""
    from ffctl.core.clock import parse_time

    return parse_time(text, WORKFLOW_TZ)


def seed_workflow_orders(store, cfg, orders: list[dict], *, actor: str = "importer") -> None:
    """Master data plus the given orders, entered into their workflows.

    Each order: id, created ('2026-11-23 09:00' local), channel (web), customer (C-WEST / C-EAST),
    custom (False: a standard SKU; True: adds a custom SKU), qty (2).
    """
    from ffctl.core import workflow
    from ffctl.core.models import Customer, Order, OrderLine, Product

    with store.session(write=True) as s:
        if s.get(Customer, "C-EAST") is None:
            s.add_all(
                [
                    Customer(customer="C-EAST", name="Eastern Trading", region="east", tier="gold", sales_rep="oscar"),
                    Customer(customer="C-WEST", name="Western Goods", region="west", tier="silver"),
                    Product(sku="STD-1", name="Standard widget", category="widgets", safety_stock=5),
                    Product(sku="CUS-1", name="Custom widget", category="widgets", custom=True),
                ]
            )
            s.flush()
        for o in orders:
            s.add(
                Order(
                    order_id=o["id"],
                    customer=o.get("customer", "C-WEST"),
                    channel=o.get("channel", "web"),
                    created_at=workflow_time(o.get("created", "2026-11-23 09:00")),
                    priority=o.get("priority", 0),
                    promised_ship_date=o.get("promised"),
                )
            )
        s.flush()
        for o in orders:
            s.add(OrderLine(order_id=o["id"], line_no=1, sku="STD-1", qty=o.get("qty", 2)))
            if o.get("custom"):
                s.add(OrderLine(order_id=o["id"], line_no=2, sku="CUS-1", qty=1))
        s.flush()
        workflow.enter_orders(s, cfg, workflow.order_facts(s, [o["id"] for o in orders]), actor=actor)


def order_events(store, order_id: str) -> list[tuple[str, str | None]]:
    """(event, node) of an order's audit trail, oldest first."""
    from ffctl.core.models import Event

    with store.session() as s:
        return [
            (e.event, e.node)
            for e in s.execute(sa.select(Event).where(Event.order_id == order_id).order_by(Event.id)).scalars()
        ]


# --- rules: rows seeded directly (test_rules, test_rules_concurrency, test_requisition_supplier_cli) ---

RULES_NOW = dt.datetime(2026, 3, 10, 12, 0, tzinfo=dt.timezone.utc)  # a Tuesday
QC_GOOD, QC_BAD = (100, 100, 0.0), (90, 100, 0.0)  # QC batches (passed, total, delay_days): all passed / 90%


def add_rows(session, model, rows: list[dict], defaults: dict) -> None:
    session.execute(sa.insert(model.__table__), [{**defaults, **r} for r in rows])


def seed_suppliers(session, *suppliers: tuple[str, bool]) -> None:
    from ffctl.core.models import Supplier

    add_rows(
        session,
        Supplier,
        [{"supplier": s, "name": f"Supplier {s}", "inspection_exempt": e} for s, e in suppliers],
        {"exempt_frozen_at": None, "exempt_frozen_reason": None},
    )


def seed_products(session, *products: dict) -> None:
    from ffctl.core.models import Product

    add_rows(
        session,
        Product,
        [{"name": p["sku"], **p} for p in products],
        {
            "category": None,
            "safety_stock": 0,
            "reorder_qty": None,
            "supplier": None,
            "lead_time_days": None,
            "custom": False,
        },
    )


def seed_stock(session, *rows: tuple[str, str, int, int]) -> None:
    from ffctl.core.models import Stock

    add_rows(session, Stock, [{"sku": s, "warehouse": w, "on_hand": h, "allocated": a} for s, w, h, a in rows], {})


def seed_orders(session, *orders: dict, customer: str = "C1") -> None:
    """Orders with their lines and (for status open/on_hold) an open task at ``node`` entered at ``entered_at``."""
    from ffctl.core.models import Customer, Order, OrderLine, Task

    if session.execute(sa.select(Customer.customer).where(Customer.customer == customer)).first() is None:
        add_rows(
            session,
            Customer,
            [{"customer": customer, "name": customer}],
            {"tier": None, "region": None, "credit_limit": None, "sales_rep": None},
        )
    order_defaults = {
        "customer": customer,
        "channel": None,
        "region": None,
        "sales_rep": None,
        "priority": 0,
        "created_at": RULES_NOW,
        "promised_ship_date": None,
        "promise_source": None,
        "status": "open",
        "workflow": "standard",
        "node": None,
        "has_custom_items": False,
        "content_hash": None,
        "shipped_at": None,
        "delivered_at": None,
        "delivery_issue": None,
        "cancelled_at": None,
        "carrier": None,
        "tracking": None,
    }
    keys = set(order_defaults) | {"order_id"}
    add_rows(session, Order, [{k: v for k, v in o.items() if k in keys} for o in orders], order_defaults)
    lines = [
        {"order_id": o["order_id"], "line_no": i + 1, "sku": sku, "qty": qty, "allocated": allocated}
        for o in orders
        for i, (sku, qty, allocated) in enumerate(o.get("lines", ()))
    ]
    if lines:
        add_rows(session, OrderLine, lines, {"unit_price": None})
    tasks = [
        {
            "order_id": o["order_id"],
            "node": o["node"],
            "entered_at": o.get("entered_at", RULES_NOW),
            "held_at": o.get("entered_at", RULES_NOW) if o.get("status") == "on_hold" else None,
        }
        for o in orders
        if o.get("node") and o.get("status", "open") in ("open", "on_hold")
    ]
    if tasks:
        add_rows(
            session,
            Task,
            tasks,
            {
                "workflow": "standard",
                "seq": 1,
                "status": "open",
                "owner": None,
                "sla_seconds": 3600,
                "risk_at": None,
                "deadline": None,
                "sla_state": "on_track",
                "paused_seconds": 0.0,
                "next_step": 0,
                "escalation_level": 0,
                "next_action_at": None,
                "completed_at": None,
                "completed_by": None,
                "outcome": None,
                "note": None,
            },
        )


def seed_batches(
    session, supplier: str, batches: list[tuple[int, int, float]], *, start: dt.datetime | None = None
) -> None:
    """QC batches, oldest first: (passed, total, delay_days); received and inspected a day apart, before RULES_NOW."""
    from ffctl.core.models import QcBatch

    start = start or RULES_NOW - dt.timedelta(days=len(batches) + 1)
    rows = []
    for i, (passed, total, delay) in enumerate(batches):
        received = start + dt.timedelta(days=i)
        rows.append(
            {
                "supplier": supplier,
                "batch_id": f"{supplier}-B{i + 1}",
                "sku": None,
                "passed": passed,
                "total": total,
                "promised_at": received - dt.timedelta(days=delay),
                "received_at": received,
                "inspected_at": received + dt.timedelta(hours=1),
            }
        )
    add_rows(session, QcBatch, rows, {})


# --- sweep: a wall-clock config and orders entered into it (test_sweep, test_sweep_concurrency, test_schedule, test_notify)

SWEEP_T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)  # a Monday; every node here counts wall-clock time

SWEEP_CONFIG = """
[defaults]
timezone = "UTC"

[roles.clerk]
members = ["ann"]
escalate_to = "lead"
[roles.lead]
members = ["ben"]
escalate_to = "boss"
[roles.boss]
members = ["cat"]
[roles.admin]
members = ["root"]
[users.ann]
email = "ann@example.com"
[users.ben]
webhook = "http://127.0.0.1:9/hook"
[users.oscar]
email = "oscar@example.com"

[workflows.rush]
match = { channel = ["rush"] }
nodes = ["triage", "pack"]
[workflows.main]
match = {}
nodes = ["review", "approve", "pack"]

[nodes.review]
owner = "clerk"
sla = "1h"
warn_at = 0.5
escalation = [
  { after = "0m", action = "remind" },
  { after = "30m", action = "escalate" },
  { after = "1h", action = "escalate" },
  { after = "2h", action = "escalate" },
  { after = "3h", action = "notify", to = ["boss", "order.sales_rep"], reason = "customer waiting" },
]
[nodes.approve]
owner = "clerk"
sla = "1h"
escalation = [ { after = "30m", action = "auto_approve" } ]
[nodes.pack]
owner = "clerk"
sla = "1h"
escalation = [ { after = "1h", action = "auto_reject", reason = "nobody packed" } ]
[nodes.triage]
owner = "clerk"
sla = "1h"
escalation = [ { after = "0m", action = "auto_reject" } ]

[notify]
log = "notifications.jsonl"
"""

#: what a late sweep does to a review task, in ladder order: (step, audit event)
REVIEW_LADDER = [
    ("at_risk", "at_risk"),
    ("breached", "breached"),
    ("esc:0", "reminded"),
    ("esc:1", "escalated"),
    ("esc:2", "escalated"),
    ("esc:3", "escalated"),
    ("esc:4", "notified"),
]
#: who a late sweep over review tasks tells, and on what channel: one message each, however many
#: tasks (ann: email; ben: webhook; cat: no channel, so the log; oscar, the sales rep: email)
REVIEW_MESSAGES = [("ann", "email"), ("ben", "webhook"), ("cat", "log"), ("oscar", "email")]


def sweep_config(tmp_path, text: str = SWEEP_CONFIG):
    from ffctl.core.config import load_config

    path = tmp_path / "ffctl.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


def add_sweep_orders(
    store, cfg, n: int, *, at: dt.datetime = SWEEP_T0, prefix: str = "SO", channel: str = "web", start: int = 0
) -> list[str]:
    """n orders for one customer, entered into their workflow at ``at``."""
    from ffctl.core import workflow
    from ffctl.core.models import Customer, Order
    from ffctl.core.store import insert_or_ignore

    ids = [f"{prefix}-{i:06d}" for i in range(start, start + n)]
    if not ids:
        return ids
    with store.session(write=True) as s:
        insert_or_ignore(s, Customer, [{"customer": "c1", "name": "Customer One", "region": "west"}], ["customer"])
        s.execute(
            sa.insert(Order),
            [
                {"order_id": i, "customer": "c1", "created_at": at, "channel": channel, "sales_rep": "oscar"}
                for i in ids
            ],
        )
        workflow.enter_orders(s, cfg, workflow.order_facts(s, ids), actor="test")
    return ids


def store_scalar(store, sql: str, **params):
    with store.session() as s:
        return s.execute(sa.text(sql), params).scalar()


def complete_task_of(store, cfg, order_id: str, at: dt.datetime) -> None:
    from ffctl.core import workflow

    with store.session(write=True) as s:
        workflow.complete(s, cfg, order_id, at=at, actor="root")


# --- kpi: a hand-made history of four orders (test_kpi, test_dashboard) ---------------------------

KPI_BASE = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.timezone.utc)  # Monday 09:00 in Asia/Shanghai
KPI_NOW = KPI_BASE + dt.timedelta(minutes=3000)
KPI_NOW_TEXT = KPI_NOW.isoformat()
KPI_SEQ = {"credit_review": 0, "tech_confirm": 1, "allocation": 2, "wave_pick": 3, "pack_check": 4, "dispatch": 5}
KPI_OWNER = {
    "credit_review": "finance_reviewer",
    "tech_confirm": "engineering",
    "allocation": None,
    "wave_pick": "warehouse",
    "pack_check": "warehouse",
    "dispatch": "warehouse",
}


def kpi_time(minutes: float) -> dt.datetime:
    return KPI_BASE + dt.timedelta(minutes=minutes)


def kpi_task(order_id, node, entered, completed=None, outcome=None, *, deadline, breached=False):
    status = {
        None: "open",
        "completed": "done",
        "auto_approved": "done",
        "rejected": "rejected",
        "auto_rejected": "rejected",
        "skipped": "skipped",
        "cancelled": "cancelled",
    }[outcome]
    return {
        "order_id": order_id,
        "workflow": "standard",
        "node": node,
        "seq": KPI_SEQ[node],
        "status": status,
        "owner": KPI_OWNER[node],
        "entered_at": kpi_time(entered),
        "sla_seconds": 600,
        "deadline": kpi_time(deadline),
        "sla_state": "breached" if breached else "on_track",
        "completed_at": None if completed is None else kpi_time(completed),
        "outcome": outcome,
    }


def kpi_flow(order_id, steps):
    """steps: (node, entered, completed, outcome, deadline[, breached])"""
    return [
        kpi_task(order_id, n, e, c, o, deadline=d, breached=bool(rest and rest[0])) for n, e, c, o, d, *rest in steps
    ]


def insert_kpi_history(store, *, with_o5=False, extra=None):
    """Four orders' hand-made histories through the example workflow (and O5 the week before)."""
    from ffctl.core.models import Customer, Delivery, Event, Order, OrderLine, PickLine, Product, Task

    products = [
        {"sku": "A", "name": "Widget A", "category": "widgets"},
        {"sku": "B", "name": "Widget B", "category": "widgets"},
        {"sku": "C", "name": "Gadget C", "category": "gadgets", "custom": True},
    ]
    customers = [
        {"customer": "C1", "name": "One", "region": "east"},
        {"customer": "C2", "name": "Two", "region": "west"},
        {"customer": "C3", "name": "三号客户", "region": "north"},
    ]

    def order(oid, customer, region, channel, rep, promised, shipped=None, delivered=None, issue=None, created=0):
        status = "delivered" if delivered is not None else "shipped" if shipped is not None else "open"
        return {
            "order_id": oid,
            "customer": customer,
            "region": region,
            "channel": channel,
            "sales_rep": rep,
            "created_at": kpi_time(created),
            "promised_ship_date": promised,
            "status": status,
            "workflow": "standard",
            "shipped_at": None if shipped is None else kpi_time(shipped),
            "delivered_at": None if delivered is None else kpi_time(delivered),
            "delivery_issue": issue,
        }

    d2 = dt.date(2026, 3, 2)
    orders = [
        order("O1", "C1", "east", "web", "oscar", d2, shipped=600, delivered=2000),
        order("O2", "C2", "west", "web", "oscar", d2, shipped=1800, delivered=2500, issue="damaged"),
        order("O3", "C1", "east", "b2b", "pat", d2, shipped=1200, delivered=2400),
        order("O4", "C3", None, None, "pat", dt.date(2026, 3, 5)),
    ]
    lines = [("O1", 1, "A", 2), ("O2", 1, "B", 1), ("O3", 1, "A", 3), ("O3", 2, "C", 1), ("O4", 1, "B", 1)]
    picks = [("O3", 1, "A", 2, "wrong_qty"), ("O3", 2, "C", 1, None)]  # as schema 0006 keeps picks made before it
    tasks = (
        kpi_flow(
            "O1",
            [
                ("credit_review", 0, 20, "completed", 30),
                ("tech_confirm", 20, 20, "skipped", 260),
                ("allocation", 20, 25, "completed", 30),
                ("wave_pick", 25, 85, "completed", 145),
                ("pack_check", 85, 115, "completed", 145),
                ("dispatch", 115, 600, "completed", 115 + 2880),
            ],
        )
        + kpi_flow(
            "O2",
            [
                ("credit_review", 0, 60, "completed", 30, True),
                ("tech_confirm", 60, 60, "skipped", 300),
                ("allocation", 60, 80, "completed", 70, True),
                ("wave_pick", 80, 140, "completed", 200),
                ("pack_check", 140, 170, "completed", 200),
                ("dispatch", 170, 1800, "completed", 170 + 2880),
            ],
        )
        + kpi_flow(
            "O3",
            [
                ("credit_review", 0, 10, "completed", 30),
                ("tech_confirm", 10, 40, "rejected", 250),
                ("credit_review", 40, 50, "completed", 70),
                ("tech_confirm", 50, 100, "completed", 290),
                ("allocation", 100, 130, "completed", 110, True),
                ("wave_pick", 130, 190, "completed", 250),
                ("pack_check", 190, 220, "completed", 250),
                ("dispatch", 220, 1200, "completed", 220 + 2880),
            ],
        )
        + kpi_flow(
            "O4",
            [
                ("credit_review", 0, 15, "auto_approved", 30),
                ("tech_confirm", 15, 15, "skipped", 255),
                ("allocation", 15, 20, "completed", 25),
                ("wave_pick", 20, None, None, 140, True),
            ],
        )
    )
    events = [
        {"event": "reminded", "order_id": "O2", "node": "credit_review", "at": kpi_time(30)},
        {"event": "escalated", "order_id": "O2", "node": "credit_review", "at": kpi_time(45)},
        {"event": "breached", "order_id": "O2", "node": "credit_review", "at": kpi_time(30)},
        {"event": "escalated", "order_id": "O4", "node": "wave_pick", "at": kpi_time(200)},
        {"event": "escalated", "order_id": "O4", "node": "wave_pick", "at": kpi_time(300)},
    ]
    if with_o5:  # Sunday 2026-03-01 23:00 local: the week before
        orders.append(order("O5", "C2", "west", "web", "oscar", dt.date(2026, 3, 3), created=-600))
        lines.append(("O5", 1, "B", 1))
        tasks += kpi_flow("O5", [("credit_review", -600, -595, "completed", -570)])
    with store.session(write=True) as s:
        s.execute(sa.insert(Product.__table__), products)
        s.execute(sa.insert(Customer.__table__), customers)
        s.execute(sa.insert(Order.__table__), orders)
        s.execute(
            sa.insert(OrderLine.__table__), [{"order_id": o, "line_no": n, "sku": k, "qty": q} for o, n, k, q in lines]
        )
        s.execute(
            sa.insert(PickLine.__table__),
            [{"order_id": o, "line_no": n, "sku": k, "qty": q, "error": e} for o, n, k, q, e in picks],
        )
        s.execute(
            sa.insert(Delivery.__table__),
            [
                {"order_id": o["order_id"], "delivered_at": o["delivered_at"], "issue": o["delivery_issue"]}
                for o in orders
                if o["delivered_at"] is not None
            ],
        )
        s.execute(sa.insert(Task.__table__), tasks)
        s.execute(sa.insert(Event.__table__), [dict(e, actor="sweep", wall_at=KPI_NOW) for e in events])
        if extra:
            extra(s)


# --- translations (ffctl/locale, docs/glossary.md) -------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
CJK = re.compile(r"[\u4e00-\u9fff]")
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def build_hook():
    """hatch_build.py (the catalog compiler the build runs), imported from the checkout."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ffctl_hatch_build", REPO / "hatch_build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marked_messages() -> list[tuple[object, str, int]]:
    """Every message marked in ffctl/ as Babel extracts it (keywords ``_``, ``ngettext`` and ``N_``,
    the mark for a label translated where it is shown):
    (msgid or (singular, plural), file, line)."""
    from babel.messages.extract import extract_from_dir

    return [
        (message, f"ffctl/{name}", line)
        for name, line, message, _comments, _context in extract_from_dir(
            str(REPO / "ffctl"), method_map=[("**.py", "python")], keywords={"_": None, "ngettext": (1, 2), "N_": None}
        )
    ]


def placeholders(text: str) -> list[str]:
    """The ``str.format`` fields of ``text``, sorted (``{{`` and ``}}`` are literal braces)."""
    return sorted(_PLACEHOLDER.findall(text.replace("{{", "").replace("}}", "")))


def glossary() -> list[tuple[tuple[str, ...], str, bool]]:
    """docs/glossary.md's table: (English forms, Chinese term, checked by the tests)."""
    rows = []
    for line in (REPO / "docs" / "glossary.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not line.lstrip().startswith("|") or set(cells[0]) <= set("-: ") or cells[0] == "English":
            continue
        forms = tuple(f.strip() for f in cells[0].split(",") if f.strip())
        rows.append((forms, cells[1], cells[2].lower().startswith("yes")))
    return rows


def has_cjk(text: str) -> bool:
    return CJK.search(text) is not None


def fact_rows(store):
    """Every report fact table's rows, in key order (a refresh and a rebuild compare equal)."""
    with store.session() as s:
        return (
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM order_fact ORDER BY order_id"))],
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM node_fact ORDER BY task_id"))],
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM visit_fact ORDER BY task_id"))],
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM miss_fact ORDER BY order_id"))],
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM flow_edge ORDER BY task_id"))],
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM flow_path ORDER BY order_id"))],
            [tuple(r) for r in s.execute(sa.text("SELECT * FROM work_fact ORDER BY task_id"))],
            # the day sums follow the rows written (a count left at 0 is no row of a rebuild)
            [
                tuple(r)
                for r in s.execute(
                    sa.text("SELECT * FROM visit_day ORDER BY node, day, key_units, key_shipped, key_due")
                )
            ],
            [
                tuple(r)
                for r in s.execute(
                    sa.text("SELECT * FROM group_day ORDER BY cut, g, day, key_units, key_shipped, key_due")
                )
            ],
            [
                tuple(r)
                for r in s.execute(
                    sa.text("SELECT * FROM order_day ORDER BY week, day, key_units, key_shipped, key_due")
                )
            ],
            [
                tuple(r)
                for r in s.execute(
                    sa.text(
                        "SELECT * FROM work_day WHERE n <> 0 OR breached <> 0 OR handled <> 0 "
                        "ORDER BY kind, null_g, g, node, day"
                    )
                )
            ],
            [
                tuple(r)
                for r in s.execute(
                    sa.text(
                        "SELECT cut, g, order_id, created_at, member, conf, alloc, cycle, shipped, on_time, delivered, "
                        "perfect, picked, picked_right, decided, within, units, units_on_time, units_shipped, units_returned, "
                        "due, line_picked, line_picked_right, line_shipped, line_returned FROM group_fact "
                        "ORDER BY cut, order_id, g"
                    )
                )
            ],
        )
