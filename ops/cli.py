"""The oms command: run the OMS locally, feed it, look inside it, test it.

    oms up | down | status         everything: Kafka, Postgres, schemas, topics, six services (+ demo data on up)
    oms infra start|stop|status    Kafka and Postgres only
    oms services start|stop|status the six services only, under a supervisor that restarts them
    oms seed                       demo locations and stock
    oms submit [...]               publish a sample channel order
    oms ship ORDER                 act as the location: pick, pack and ship an order's fulfilment order
    oms order ORDER                an order's state, saga and timeline (ORDER: order id or channel/channel_order_id)
    oms test [pytest args]         the whole test suite against real Kafka and Postgres
    oms check                      the invariant checker: what is violated in the running system
    oms dead-letters [--replay P]  messages consumers gave up on, with reasons; replay one by its position
    oms load [--count N --rate R]  a channel simulator: a realistic order mix, locations that ship
    oms bench [--orders N]         throughput, latency and CPU per order of the pipeline next to a bare baseline
                                   (--private [--instances N]: on an OMS of its own from this checkout;
                                   --no-baseline: the OMS alone; --runs 3: their spread, the targets judged)
    oms latency [--rate R]         where an order's time goes at a fixed rate, hop by hop, and its CPU per order
                                   (--runs 3: their spread, the p50 target judged)
    oms soak [--minutes M --rate R]  a long steady run: memory, latency and storage per order judged
    oms fuzz [--per-topic N]       hostile messages at volume: all refused, valid traffic unharmed, invariants hold
    oms cancel ORDER [SKU:QTY ...] the channel asks to cancel an order, or only these units of it
    oms hold ORDER REASON [--release] [--by WHO]   hold an order back from fulfilment, or release the hold
    oms asyncapi                   regenerate docs/asyncapi.json from the contracts
    oms principal add KIND NAME    a Kafka principal for another channel, location or ERP, with its ACLs
    oms principal remove KIND NAME ... and its removal (user and ACLs)
    oms what-if --rules FILE       past routing requests replayed under a candidate rule set, next to the live one
    oms notify channel|preference|bounce ...   customer messages: a channel's email/webhook, an opt-out, a bounce
    oms mail [N]                   the mails the local SMTP sink received (`oms up`); one of them in full
    oms api-key add CHANNEL        an API key for a channel's calls to the tracking HTTP API (printed once)
    oms rebuild-views              the tracking read model rebuilt by replaying the topics, then swapped in
    oms openapi                    regenerate docs/openapi.json (the tracking HTTP API)
"""

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import uuid
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import get_args

import asyncpg
from standardwebhooks.webhooks import Webhook

from shared.contracts.fulfillment import LocationUpdate
from shared.contracts.notification import ConfigureChannel, RecordBounce, SetCustomerPreference
from shared.contracts.common import Line
from shared.contracts.orders import CancelOrder, CancelOrderLines, Hold, HoldOrder, HoldReason, PlaceOrder, ReleaseHold
from shared.contracts.order_rules import order_id_for
from shared.db.bootstrap import SERVICES
from shared.settings import CONSOLE, kafka_password_variable, secret, settings

from services.notification.config import notification_settings
from services.routing.rules import RuleSetError, load_rule_set, rule_set

from . import (asyncapi, bench, deadletters, demo, fuzz, health, history, invariants, latency, load, mailsink,
               principals, soak, views, whatif)
from .client import client
from .env import ROOT, load_dev_env, state_dir
from .prepare import prepare as prepare_all
from .prepare import prepare_database
from .processes import MailSinkProcess, ServiceProcess, ServiceStatus, SupervisorProcess, all_services
from .simulators import ADDRESS_CHECK, CustomerSimulator, EditDesk, HoldDesk, LocationSimulator, PaymentSimulator
from .waiting import eventually


def infra(action: str) -> int:
    codes = [subprocess.call([str(ROOT / "deploy" / script), action]) for script in ("postgres.sh", "kafka.sh")]
    return max(codes)


async def prepare(database_only: bool = False) -> None:
    await (prepare_database if database_only else prepare_all)(settings())


def services(action: str) -> int:
    run_dir = state_dir() / "run"
    supervisor = SupervisorProcess(run_dir)
    if action == "start":
        supervisor.start(os.environ.copy(), (*SERVICES, CONSOLE))
        asyncio.run(_all_running(run_dir))
    elif action == "stop":
        supervisor.stop()
        for proc in all_services(run_dir, (*SERVICES, CONSOLE)):
            proc.stop()  # any the supervisor did not run
    code = print_status(run_dir)
    return 0 if action == "stop" else code


async def _all_running(run_dir: Path, timeout: float = 15) -> None:
    with suppress(TimeoutError):  # the status printed next shows which did not come up
        await eventually(lambda: all(p.pid() for p in all_services(run_dir)), timeout=timeout,
                         what="the supervisor to start every service")


def print_status(run_dir: Path) -> int:
    """One line for the supervisor, one per service, one for the mail sink; 3 if a service is not running (as for
    `status` commands)."""
    supervisor = SupervisorProcess(run_dir).pid()
    print(f"{'supervisor':<13} " + (f"running    pid {supervisor}" if supervisor
                                     else "stopped    (nothing restarts a crashed service)"))
    procs = all_services(run_dir)
    for proc in procs:
        print(service_line(proc, proc.status()))
    console = ServiceProcess(CONSOLE, run_dir)
    print(service_line(console, console.status()).split("\n")[0] + (
        "\n" + " " * 14 + "the ops console: http://127.0.0.1:8080/ops" if console.pid() else ""))
    sink = mail_sink()
    print(f"{'mail sink':<13} " + (f"running    pid {sink.pid()}  smtp 127.0.0.1:{sink.port}  read: oms mail"
                                    if sink.pid() else "stopped"))
    return 0 if all(p.pid() and health.readiness(p.url())[0] for p in procs) else 3


def service_line(proc: ServiceProcess, status: ServiceStatus) -> str:
    exit_code = status.last_exit_code
    last_exit = "-" if exit_code is None else signal.Signals(-exit_code).name if exit_code < 0 else str(exit_code)
    line = (f"{proc.label:<13} {status.state:<10} pid {status.pid or '-':<8} restarts {status.restarts:<3} "
            f"last exit {last_exit:<8} log {proc.logfile}")
    return f"{line}\n{'':<14}{health.describe(proc.url())}" if status.pid else line


async def wait_ready(timeout: float = 90) -> bool:
    procs = all_services(state_dir() / "run")
    try:
        await eventually(lambda: all(health.readiness(p.url())[0] for p in procs), timeout=timeout,
                         what="the services to be ready")
        return True
    except TimeoutError:
        return False


async def seed() -> None:
    for kind, name in demo.PARTIES:  # passwords from deploy/dev.env; their topics before anything is sent to them
        await principals.add_party(settings(), kind, name, secret(kafka_password_variable(f"{kind}-{name}")))
    async with client(settings(), "ops/seed") as ops:
        await ops.send_many(demo.LOCATIONS)
        await ops.send_many(demo.stock_receipts())
    print(f"seeded {len(demo.LOCATIONS)} locations and {len(demo.SKUS)} SKUs at each; Kafka principals "
          + ", ".join(f"{kind}-{name}" for kind, name in demo.PARTIES))


async def submit(args: argparse.Namespace) -> None:
    lines = [(sku, int(qty)) for sku, qty in (item.split(":") for item in args.line)] if args.line else None
    order = demo.sample_order(args.channel_order_id, lines=lines, city=args.city, pickup_store=args.pickup,
                              postal_code=args.postal_code)
    # As the channel itself, on its own topic: what a real channel does.
    async with client(settings(), f"channel/{order.channel}", principal=f"channel-{order.channel}") as channel:
        envelope = await channel.send(order, topic=principals.party_topic("channel", order.channel))
    ref = f"{order.channel}/{order.channel_order_id}"
    print(f"submitted {ref} (message {envelope.id}); see: oms order {ref}")


async def _find_order(conn: asyncpg.Connection, ref: str) -> asyncpg.Record | None:
    return await conn.fetchrow("SELECT * FROM capture.orders WHERE order_id = $1", _order_id_of(ref))


def _order_id_of(ref: str) -> uuid.UUID:
    """An order id, or a channel order (channel/channel order id), whose id is derived from it."""
    return order_id_for(*ref.split("/", 1)) if "/" in ref else uuid.UUID(ref)


async def show_order(ref: str) -> int:
    conn = await asyncpg.connect(settings().reader_dsn())
    try:
        order = await _find_order(conn, ref)
        if order is None:
            purged_at = await conn.fetchval("SELECT purged_at FROM capture.purged_orders WHERE order_id = $1",
                                            _order_id_of(ref))
            print(f"no order {ref}" if purged_at is None else
                  f"order {ref} was purged {purged_at:%Y-%m-%d %H:%M} (closed longer than the order retention ago)")
            return 1
        saga = await conn.fetchrow("SELECT * FROM capture.order_sagas WHERE order_id = $1", order["order_id"])
        print(f"order {order['order_id']}  {order['channel']}/{order['channel_order_id']}  status {order['status']}")
        if saga:
            parts = ", ".join(f"{p['location_id']} {p['status']}" for p in json.loads(saga["parts"])) or "-"
            print(f"saga  state {saga['state']}  attempt {saga['attempts']}  deadline {saga['deadline_at'] or '-'}  "
                  f"parts {parts}")
            print(f"      compensations {list(saga['compensations']) or '-'}  excluded locations "
                  f"{list(saga['excluded_locations']) or '-'}  cancel reason {saga['cancel_reason'] or '-'}")
            traceparent = json.loads(saga["trace_context"]).get("traceparent", "")
            print(f"      trace id {traceparent.split('-')[1] if traceparent.count('-') == 3 else '-'}")
            holds = ", ".join(f"{h['reason']} by {h['placed_by']}" for h in json.loads(saga["holds"])) or "-"
            print(f"      holds {holds}")
            print(_money(json.loads(order["placed"]), json.loads(saga["captures"]), saga["voided"],
                         await conn.fetchval("SELECT sum(refunded) FROM capture.returns WHERE order_id = $1",
                                             order["order_id"])))
        print("edits:")
        for row in await conn.fetch("SELECT * FROM capture.order_edits WHERE order_id = $1 ORDER BY created_at",
                                    order["order_id"]):
            answer = json.loads(row["answer"]) if row["answer"] else None
            outcome = ("under way" if answer is None else f"refused {answer['reason']['code']}" if "reason" in answer
                       else f"applied: now {answer['totals']['total']}")
            print(f"  {row['edit_id']:<20} {json.loads(row['request'])['type'].split('.')[2]:<17} {outcome}")
        print("fulfilment orders:")
        for row in await conn.fetch("SELECT location_id, status, purchase_order, updated_at "
                                    "FROM fulfillment.fulfillment_orders WHERE order_id = $1 ORDER BY created_at",
                                    order["order_id"]):
            print(f"  {row['location_id']:<20} {row['status']:<18} since {row['updated_at']:%H:%M:%S}  "
                  f"{row['purchase_order'] or ''}")
        print("returns:")
        for row in await conn.fetch("SELECT * FROM capture.returns WHERE order_id = $1 ORDER BY approved_at",
                                    order["order_id"]):
            refund = json.loads(row["refund"])["total"] if row["refund"] else "-"
            print(f"  {row['return_id']:<20} {row['status']:<9} to {row['return_to']}  refund {refund}  "
                  f"paid back {row['refunded'] if row['refunded'] is not None else '-'}"
                  f"{'  exchange ' + str(row['exchange_order_id']) if row['exchange_order_id'] else ''}")
        print("timeline:")
        for row in await conn.fetch("SELECT * FROM capture.order_timeline WHERE order_id = $1 ORDER BY entry_id",
                                    order["order_id"]):
            print(f"  {row['at']:%H:%M:%S.%f}  {row['direction']:<4} {row['message_type']:<45} -> {row['saga_state']}")
        print("routing decisions:")
        for row in await conn.fetch("SELECT * FROM routing.decisions WHERE order_id = $1 ORDER BY decision_id",
                                    order["order_id"]):
            print(f"  {row['decided_at']:%H:%M:%S.%f}  {row['rule_set'] or '-'}  {row['explanation']}")
        return 0
    finally:
        await conn.close()


def _money(placed: dict, captures: list, voided: bool, refunded: Decimal | None) -> str:
    """The order's money as it stands: what it charges (as last edited), what is authorised, paid, paid back."""
    order = PlaceOrder.model_validate(placed)
    authorised = order.payment.amount if order.payment else "-"
    paid = sum((Decimal(c[1]) for c in captures), Decimal(0))
    return (f"money total {order.computed_totals().total} {order.currency}  authorised {authorised}  captured {paid}  "
            f"refunded {refunded or 0}{'  rest of the authorisation voided' if voided else ''}")


# What `oms ship` reports, as the location, by kind of delivery (see LocationUpdate).
HANDOVER = {"ship": ("picked", "packed", "shipped", "delivered"), "pickup": ("picked", "ready_for_pickup", "picked_up")}


async def ship(ref: str, carrier: str, until: str | None) -> int:
    """Each open fulfilment order of the order (a split has several) reported by its own location."""
    conn = await asyncpg.connect(settings().reader_dsn())
    try:
        order = await _find_order(conn, ref)
        open_orders = order and await conn.fetch(
            "SELECT * FROM fulfillment.fulfillment_orders WHERE order_id = $1 AND status IN "
            "('requested', 'accepted', 'picked', 'packed') ORDER BY location_id", order["order_id"])
    finally:
        await conn.close()
    if not open_orders:
        print(f"order {ref} has no open fulfilment order")
        return 1
    for fulfilment_order in open_orders:
        steps = HANDOVER[json.loads(fulfilment_order["delivery"])["type"]]
        steps = steps[:steps.index(until) + 1] if until in steps else steps
        ids = {"fulfillment_order_id": fulfilment_order["fulfillment_order_id"], "order_id": order["order_id"]}
        location_id = fulfilment_order["location_id"]
        # As the location itself when it has a login (the demo's: deploy/dev.env): it reads its work on its own
        # topic and reports on its own. Else (`oms load`'s locations) ops speaks for it on the shared topic.
        principal = principals.party_principal("location", location_id).name
        as_location = kafka_password_variable(principal) in os.environ
        if as_location and not await _work_item(location_id, principal, str(ids["fulfillment_order_id"])):
            print(f"{location_id} has no work for order {ref} on its topics")
            return 1
        async with client(settings(), f"location/{location_id}",
                          **({"principal": principal} if as_location else {})) as location:
            for status in steps:
                tracking = {"carrier": carrier, "tracking_number": f"TRK{uuid.uuid4().hex[:12].upper()}"}
                await location.send(LocationUpdate(**ids, status=status, **(tracking if status == "shipped" else {})),
                                    topic=principals.party_topic("location", location_id) if as_location else None)
        print(f"reported {', '.join(steps)} for {ref} at {location_id}" + (f" as {principal}" if as_location else ""))
    return 0


async def _work_item(location_id: str, principal: str, fulfillment_order_id: str) -> bool:
    """Whether the location finds the fulfilment order among the work (or purchase orders) on its own topics."""
    for topic in principals.party_read_topics("location", location_id):
        async for record in history.records(settings(), topic, principal=principal):
            if json.loads(record.value).get("data", {}).get("fulfillment_order_id") == fulfillment_order_id:
                return True
    return False


async def check_invariants() -> int:
    conn = await asyncpg.connect(settings().reader_dsn())
    try:
        report = await invariants.check(conn)
    finally:
        await conn.close()
    report.violations += await invariants.check_topics(settings())
    print(report)
    return 0 if report.ok else 1


async def hold(ref: str, reason: str, release: bool, by: str) -> int:
    channel, channel_order_id = ref.split("/", 1)
    keys = {"channel": channel, "channel_order_id": channel_order_id}
    command = (ReleaseHold(**keys, reason=reason, released_by=by) if release
               else HoldOrder(**keys, hold=Hold(reason=reason, placed_by=by)))
    async with client(settings(), f"channel/{channel}") as sender:
        await sender.send(command)
    print(f"asked to {'release the' if release else 'place a'} {reason} hold on {ref}; see: oms order {ref}")
    return 0


async def cancel(ref: str, units: list[str]) -> int:
    channel, channel_order_id = ref.split("/", 1)
    keys = {"channel": channel, "channel_order_id": channel_order_id}
    lines = [Line(sku=sku, quantity=int(quantity)) for sku, quantity in (unit.rsplit(":", 1) for unit in units)]
    command = (CancelOrderLines(**keys, edit_id=f"ops-{uuid.uuid4().hex[:12]}", lines=lines) if lines
               else CancelOrder(**keys))
    async with client(settings(), f"channel/{channel}") as sender:
        await sender.send(command)
    print(f"asked to cancel {' '.join(units) or 'all'} of {ref}; see: oms order {ref}")
    return 0


async def run_load(count: int, rate: float | None, ship: bool) -> int:
    config = settings()
    network = load.Network(load.run_tag())
    stream = load.stream(network, count)
    async with client(config, "channel/load") as channel:
        await load.seed(channel, network)
        # Made only when they run: a stand-in's consumer is made with it, and one never started is never stopped.
        customers = CustomerSimulator(config, channel, group=f"oms.simulator.customers.{network.tag}") if ship else None
        shipping = [LocationSimulator(config, channel, group=f"oms.simulator.{network.tag}").run(),
                    PaymentSimulator(config, channel, group=f"oms.simulator.payments.{network.tag}").run(),
                    customers.run()] if customers else []
        desk = HoldDesk(config, channel, prefix=network.tag, leaves=frozenset({ADDRESS_CHECK}),
                        group=f"oms.simulator.holds.{network.tag}")
        edits = EditDesk(config, channel, prefix=network.tag, group=f"oms.simulator.edits.{network.tag}")
        stand_ins = asyncio.gather(desk.run(), edits.run(), *shipping)
        print(f"load run {network.tag}: {count} orders at {f'{rate:.0f}/s' if rate else 'full speed'}")
        seconds = await load.publish(channel, stream, rate, progress=True)
        print(f"published {count} orders in {seconds:.1f}s ({count / seconds:,.0f}/s); "
              f"`oms check` shows how they settled")
        await asyncio.sleep(5)
        while (desk.pending or edits.pending) and not stand_ins.done():  # every hold heard of is released
            await asyncio.sleep(0.2)
        stand_ins.cancel()
        await asyncio.gather(stand_ins, return_exceptions=True)
    rule = (f"first orders over {config.hold_new_customer_above}" if config.hold_new_customer_above is not None
            else f"off (OMS_HOLD_NEW_CUSTOMER_ABOVE={load.NEW_CUSTOMER_HOLD_ABOVE} holds the mix's large first orders)")
    print(f"{desk.summary()}; the new-customer rule: {rule}")
    returns = (f"{customers.requested} asked, {customers.exchanges} of them exchanges" if customers
               else "none (nothing shipped)")
    print(f"{edits.summary()}; returns: {returns}")
    return 0


async def dead_letters(position: str | None) -> int:
    letters = await deadletters.read_all(settings())
    if position is None:
        for item in letters:
            print(item.line())
        print(f"{len(letters)} dead letters")
        unpublishable = await deadletters.parked(settings())
        if unpublishable:
            print("\nstaged messages Kafka refused for good (each service's outbox_parked):")
            print("\n".join(unpublishable))
        return 0
    found = [item.letter for item in letters if item.position == position]
    if not found:
        print(f"no dead letter from {position}")
        return 1
    async with client(settings(), "ops/replay") as ops:
        await deadletters.replay(ops, found[0])
    print(f"replayed {position} to {found[0].source_topic}")
    return 0


async def add_principal(kind: str, name: str) -> int:
    variable = kafka_password_variable(principals.party_principal(kind, name).name)
    password = os.environ.get(variable) or secrets.token_urlsafe(24)
    principal = await principals.add_party(settings(), kind, name, password)
    print(f"principal {principal.name}: writes {', '.join(principal.writes)}; reads {', '.join(principal.reads)}; "
          f"consumer groups {settings().topic_prefix}{principal.group_prefix}*")
    print(f"password from {variable}" if variable in os.environ else f"password (shown once): {password}")
    return 0


async def remove_principal(kind: str, name: str) -> int:
    principal = principals.party_principal(kind, name)
    await principals.remove_user(settings(), principal.name)
    print(f"removed principal {principal.name} and its ACLs")
    return 0


async def add_api_key(channel: str) -> int:
    try:
        key = await views.add_key(settings(), channel)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"API key of channel {channel} (shown once; stored hashed): {key}")
    return 0


async def rebuild_views() -> int:
    replayed = await views.rebuild(settings())
    print(f"rebuilt the tracking views from {replayed.events} events of {replayed.orders} orders and swapped them in")
    for topic, size in sorted(replayed.bytes.items()):
        print(f"  {topic}: {size} bytes, {replayed.bytes_per_order(topic):.0f} per order")
    return 0


async def what_if(args: argparse.Namespace) -> int:
    try:
        live, candidate = rule_set(settings().routing_rules), load_rule_set(args.rules)
    except RuleSetError as error:
        print(error, file=sys.stderr)
        return 2
    since = args.since or (None if args.last else datetime.now(UTC) - timedelta(hours=24))
    report = await whatif.run(settings(), live, candidate, since, args.last, args.kafka_principal)
    print(json.dumps(whatif.as_json(report), indent=2) if args.json else whatif.text(report))
    return 0


def mail_sink() -> MailSinkProcess:
    return MailSinkProcess(state_dir() / "run", state_dir() / "mail", notification_settings().smtp_port)


async def notify(args: argparse.Namespace) -> int:
    """Notification settings, sent as commands on notification.commands.v1 (ops writes it)."""
    match args.notify_action:
        case "channel":
            secret = None
            if args.webhook_url:
                secret = os.environ.get("OMS_WEBHOOK_SECRET") or new_webhook_secret()
            command = ConfigureChannel(channel=args.channel, email=args.email, from_address=args.from_address,
                                       webhook_url=args.webhook_url, webhook_secret=secret, locale=args.locale)
            if secret and "OMS_WEBHOOK_SECRET" not in os.environ:
                print(f"webhook secret (shown once; the receiver verifies with it): {secret}")
        case "preference":
            command = SetCustomerPreference(customer=args.customer, email=args.email, webhook=args.webhook)
        case "bounce":
            command = RecordBounce(address=args.address, detail=args.detail)
    async with client(settings(), "ops/notify") as ops:
        await ops.send(command)
    print(f"sent {type(command).__name__}")
    return 0


def new_webhook_secret() -> str:
    """Standard Webhooks' form: whsec_ and the base64 of 32 random bytes (checked by its own parser)."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    Webhook(secret)
    return secret


def show_mail(number: int | None) -> int:
    found = mailsink.mails(mail_sink().mail_dir)
    if number is None:
        for index, path in enumerate(found, 1):
            print(mailsink.summary(index, path))
        print(f"{len(found)} mails in {mail_sink().mail_dir}")
        return 0
    if not 1 <= number <= len(found):
        print(f"no mail {number} ({len(found)} received)")
        return 1
    print(mailsink.show(found[number - 1]))
    return 0


async def configure_demo_channel() -> None:
    """The demo channel mails its customers through the local sink (the service's SMTP default)."""
    async with client(settings(), "ops/seed") as ops:
        await ops.send(ConfigureChannel(channel="web", email=True, from_address="orders@web.oms.example"))


def up() -> int:
    if infra("start"):
        return 1
    asyncio.run(prepare())
    mail_sink().start()
    services("start")
    asyncio.run(seed())
    asyncio.run(configure_demo_channel())
    if not asyncio.run(wait_ready()):
        services("status")
        return 1
    print("\nThe OMS is running. Try:\n  ./oms submit\n  ./oms order web/<channel order id>\n  ./oms mail\n"
          "  the ops console: http://127.0.0.1:8080/ops  (password: OMS_CONSOLE_PASSWORD in deploy/dev.env)\n"
          "  ./oms api-key add web    (then the HTTP API: README, 'Tracking and placing orders over HTTP')\n"
          "  ./oms down")
    return 0


async def run_fuzz(per_topic: int, seed: int, timeout: float | None) -> int:
    report = await fuzz.fuzz(settings(), per_topic, seed, all_services(state_dir() / "run"), timeout)
    print(report)
    return 0 if report.ok else 1


def test(pytest_args: list[str]) -> int:
    if infra("start"):
        return 1
    code = subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT)
    if code == 5:
        print("pytest collected no tests: that is a failure here", file=sys.stderr)
        return 1
    return code


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oms", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start everything and load demo data")
    sub.add_parser("down", help="stop the services, Kafka and Postgres")
    sub.add_parser("status", help="what is running")
    for name in ("infra", "services"):
        sub.add_parser(name).add_argument("action", choices=["start", "stop", "status"])
    sub.add_parser("prepare", help="create the database, service roles and schemas, and the topics").add_argument(
        "--database-only", action="store_true", help="roles, schemas and migrations only (Kubernetes: deploy/k8s)")
    sub.add_parser("seed", help="publish demo locations and stock")
    s = sub.add_parser("submit", help="publish a sample channel order")
    s.add_argument("--channel-order-id")
    s.add_argument("--line", action="append", metavar="SKU:QTY", help=f"repeatable; SKUs: {', '.join(demo.SKUS)}")
    s.add_argument("--city", default="Frankfurt", choices=sorted(demo.CITIES))
    s.add_argument("--pickup", metavar="STORE_ID", help="buy online, pick up in this store (e.g. ST-COLOGNE)")
    s.add_argument("--postal-code", help="an address without coordinates, routed by zone (e.g. 80331)")
    o = sub.add_parser("order", help="show an order, its saga and timeline")
    o.add_argument("ref", help="order id, or channel/channel_order_id")
    sh = sub.add_parser("ship", help="act as the location: pick, pack, ship and deliver the order (a pickup "
                                     "order: pick, ready for pickup, collected)")
    sh.add_argument("ref")
    sh.add_argument("--carrier", default="DHL")
    sh.add_argument("--until", choices=sorted({s for steps in HANDOVER.values() for s in steps}),
                    help="stop after this step (e.g. shipped, ready_for_pickup)")
    sub.add_parser("asyncapi", help="regenerate docs/asyncapi.json and the README's saga table")
    sub.add_parser("check", help="check the OMS invariants against the running system")
    ld = sub.add_parser("load", help="publish a realistic order mix; locations ship what they get")
    ld.add_argument("--count", type=int, default=1000)
    ld.add_argument("--rate", type=float, help="orders per second (default: as fast as possible)")
    ld.add_argument("--no-ship", dest="ship", action="store_false", help="leave fulfilment orders unshipped")
    bn = sub.add_parser("bench", help="measure the running OMS against a bare pipeline baseline")
    bn.add_argument("--orders", type=int, default=3000, help="orders in the saturation phase")
    bn.add_argument("--rate", type=float, help="steady-phase rate for latency (default: half the throughput)")
    bn.add_argument("--private", action="store_true",
                    help="start an OMS of its own (this checkout, own database and topics) instead of the running one")
    bn.add_argument("--instances", type=int, default=1, help="with --private: instances of each service")
    bn.add_argument("--no-baseline", action="store_true", help="only the OMS (comparing two versions of it)")
    bn.add_argument("--runs", type=int, default=1,
                    help="runs in a row, then their spread and issue 12's targets judged on the medians")
    lt = sub.add_parser("latency", help="an OMS of its own at a fixed rate: latency per hop, CPU and commits per order")
    lt.add_argument("--rate", type=float, default=50,
                    help="orders per second (default 50, the issue's p50 target rate)")
    lt.add_argument("--orders", type=int, default=1000)
    lt.add_argument("--runs", type=int, default=1,
                    help="runs in a row, each on a fresh OMS, then their spread and the p50 target judged")
    lt.add_argument("--warmup", type=int,
                    help="orders sent first at the same rate and not measured (default: 5 seconds' worth)")
    sk = sub.add_parser("soak", help="the running OMS at a steady rate for a long while: memory, latency, storage")
    sk.add_argument("--minutes", type=float, default=30)
    sk.add_argument("--rate", type=float, default=15, help="orders per second (default 15: about half of what 2 "
                                                           "cores take with every order shipped, paid and some "
                                                           "returned; see docs/benchmark.md)")
    sk.add_argument("--interval", type=float, default=30, help="seconds between samples")
    sk.add_argument("--private", action="store_true",
                    help="start an OMS of its own (this checkout, own database and topics) instead of the running one")
    fz = sub.add_parser("fuzz", help="send hostile messages to every consumed topic and check they were all refused")
    fz.add_argument("--per-topic", type=int, default=10_000, help="hostile messages per consumed topic")
    fz.add_argument("--seed", type=int, default=1, help="the same seed sends the same messages")
    fz.add_argument("--timeout", type=float, help="seconds to wait for the OMS to work through them")
    dl = sub.add_parser("dead-letters", help="list dead letters, or replay one")
    dl.add_argument("--replay", metavar="TOPIC/PARTITION/OFFSET", help="publish this message again")
    c = sub.add_parser("cancel", help="the channel asks to cancel an order")
    c.add_argument("ref", help="channel/channel_order_id")
    c.add_argument("units", nargs="*", metavar="SKU:QTY", help="only these units (a line cancellation)")
    h = sub.add_parser("hold", help="hold an order back from fulfilment (or release a hold)")
    h.add_argument("ref", help="channel/channel_order_id")
    h.add_argument("reason", choices=get_args(HoldReason))
    h.add_argument("--release", action="store_true", help="release the hold of this reason")
    h.add_argument("--by", default="ops", help="who places or releases it")
    pr = sub.add_parser("principal", help="Kafka principals of outside parties").add_subparsers(
        dest="principal_action", required=True)
    add = pr.add_parser("add", help="create a SCRAM user KIND-NAME with the ACLs of its kind (password from "
                                    "OMS_<KIND>_<NAME>_KAFKA_PASSWORD, or a new one printed once)")
    remove = pr.add_parser("remove", help="delete the SCRAM user KIND-NAME and its ACLs")
    for action in (add, remove):
        action.add_argument("kind", choices=sorted(principals.PARTY_KINDS))
        action.add_argument("name", nargs="?", help="the channel's or location's id (an ERP may have none)")
    wi = sub.add_parser("what-if", help="replay past routing requests under a candidate rule set and the live one, "
                                        "side by side; writes nothing")
    wi.add_argument("--rules", type=Path, required=True, metavar="CANDIDATE.toml", help="the candidate rule set")
    window = wi.add_mutually_exclusive_group()
    window.add_argument("--since", type=whatif.parse_since, metavar="ISO-TIME",
                        help="requests made since then (default: the last 24 hours)")
    window.add_argument("--last", type=int, metavar="N", help="the last N orders' requests")
    wi.add_argument("--json", action="store_true", help="the report as JSON, with every order")
    wi.add_argument("--kafka-principal", help="read the topic as this principal (e.g. one that may only read "
                                              "routing.commands.v1; password from OMS_<PRINCIPAL>_KAFKA_PASSWORD)")
    nt = sub.add_parser("notify", help="customer messages: channel settings, opt-outs, bounces").add_subparsers(
        dest="notify_action", required=True)
    ch = nt.add_parser("channel", help="how a sales channel's customers are told (replaces its settings); with "
                                       "--webhook-url, the secret from OMS_WEBHOOK_SECRET or a new one printed once")
    ch.add_argument("channel")
    ch.add_argument("--no-email", dest="email", action="store_false", help="no email to its customers")
    ch.add_argument("--from", dest="from_address", help="the From address of its mails")
    ch.add_argument("--webhook-url", help="POST a signed webhook (Standard Webhooks) here for every message")
    ch.add_argument("--locale", default="en")
    pf = nt.add_parser("preference", help="a customer's opt-out (by email address or customer id)")
    pf.add_argument("customer")
    pf.add_argument("--no-email", dest="email", action="store_false")
    pf.add_argument("--no-webhook", dest="webhook", action="store_false")
    bo = nt.add_parser("bounce", help="record that mail to this address bounced: it is not mailed again")
    bo.add_argument("address")
    bo.add_argument("--detail", default="")
    ml = sub.add_parser("mail", help="the mails the local SMTP sink received; one in full")
    ml.add_argument("number", nargs="?", type=int)
    key = sub.add_parser("api-key", help="API keys of the tracking HTTP API").add_subparsers(dest="key_action",
                                                                                          required=True)
    key.add_parser("add", help="a new key for CHANNEL, printed once").add_argument("channel")
    sub.add_parser("rebuild-views", help="rebuild the tracking read model from the topics and swap it in")
    sub.add_parser("openapi", help="regenerate docs/openapi.json")
    sub.add_parser("k8s", help="regenerate deploy/k8s/base/generated (topics, users, database, services)")
    t = sub.add_parser("test", help="run the test suite (extra arguments go to pytest)")
    t.add_argument("pytest_args", nargs=argparse.REMAINDER)
    return p


def _starts_an_oms_of_its_own(args: argparse.Namespace) -> bool:
    """The measurements that start their own services need only Kafka and Postgres: started here if they are not
    running, as `oms test` does."""
    return args.command == "latency" or (args.command in ("bench", "soak") and args.private)


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `oms order X | head` ends quietly
    load_dev_env()
    args = parser().parse_args()
    if _starts_an_oms_of_its_own(args) and infra("start"):
        sys.exit(1)
    match args.command:
        case "up":
            code = up()
        case "down":
            code = services("stop") or infra("stop")
            mail_sink().stop()
        case "status":
            code = max(infra("status"), services("status"))
        case "infra":
            code = infra(args.action)
        case "services":
            code = services(args.action)
        case "prepare":
            code = asyncio.run(prepare(args.database_only)) or 0
        case "seed":
            code = asyncio.run(seed()) or 0
        case "submit":
            code = asyncio.run(submit(args)) or 0
        case "order":
            code = asyncio.run(show_order(args.ref))
        case "ship":
            code = asyncio.run(ship(args.ref, args.carrier, args.until))
        case "test":
            code = test(args.pytest_args)
        case "load":
            code = asyncio.run(run_load(args.count, args.rate, args.ship))
        case "bench":
            if args.private:
                print(asyncio.run(bench.bench_private(settings(), args.orders, args.rate, args.instances,
                                                      with_baseline=not args.no_baseline, runs=args.runs)))
            else:
                print(asyncio.run(bench.bench(settings(), args.orders, args.rate,
                                              bench.running_services(state_dir() / "run"),
                                              with_baseline=not args.no_baseline, runs=args.runs)))
            code = 0
        case "latency":
            print(asyncio.run(latency.latency(settings(), args.rate, args.orders, args.runs, args.warmup)))
            code = 0
        case "soak":
            code = asyncio.run(soak.soak(settings(), state_dir() / "run", args.minutes, args.rate, args.interval,
                                         private=args.private))
        case "fuzz":
            code = asyncio.run(run_fuzz(args.per_topic, args.seed, args.timeout))
        case "check":
            code = asyncio.run(check_invariants())
        case "dead-letters":
            code = asyncio.run(dead_letters(args.replay))
        case "cancel":
            code = asyncio.run(cancel(args.ref, args.units))
        case "hold":
            code = asyncio.run(hold(args.ref, args.reason, args.release, args.by))
        case "principal":
            change = add_principal if args.principal_action == "add" else remove_principal
            code = asyncio.run(change(args.kind, args.name))
        case "what-if":
            code = asyncio.run(what_if(args))
        case "notify":
            code = asyncio.run(notify(args))
        case "mail":
            code = show_mail(args.number)
        case "api-key":
            code = asyncio.run(add_api_key(args.channel))
        case "rebuild-views":
            code = asyncio.run(rebuild_views())
        case "k8s":
            from . import k8s  # a checkout's command: PyYAML is not in the image

            print(f"wrote {k8s.write()}")
            code = 0
        case "openapi":
            print(f"wrote {views.write_openapi()}")
            code = 0
        case "asyncapi":
            print(f"wrote {asyncapi.write()} and the saga table in {asyncapi.write_saga_table()}")
            code = 0
    sys.exit(code)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
