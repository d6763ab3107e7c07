"""The ops console's pure parts: lag and rate arithmetic, the alert conditions, the order of stuck orders,
escaping of untrusted payloads, the operator's session and CSRF token, the audit file."""

import base64
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ops.console import model
from ops.console.app import TEMPLATES, Console, build_app
from ops.console.audit import AuditLog
from ops.console.auth import Sessions
from ops.console.letters import Page, Shown
from ops.console.sampler import History, Sample, Sampler, ours, service_of_group
from shared.contracts.ops import DeadLetter
from shared.settings import Settings

PASSWORD, SECRET = "right-password", "a-session-secret-of-some-length"


def test_lag_is_what_is_written_but_not_committed_per_partition():
    assert model.lag({0: 5, 1: 10}, {0: 8, 1: 10}) == {0: 3, 1: 0}


def test_a_partition_never_committed_lags_by_everything_and_a_commit_past_the_end_is_no_lag():
    assert model.lag({1: None}, {0: 4, 1: 6, 2: 3}) == {0: 4, 1: 6, 2: 3}
    assert model.lag({0: 12}, {0: 10}) == {0: 0}


def test_rates_come_from_deltas_of_running_totals():
    assert model.rate({"a": 10, "b": 5}, {"a": 30, "b": 5, "new": 7}, 4.0) == {"a": 5.0, "b": 0.0}
    assert model.rate({"a": 10}, {"a": 3}, 1.0) == {}, "a recreated topic has no rate yet"
    assert model.rate({"a": 1}, {"a": 2}, 0) == {}


def series(*points: tuple[float, float]) -> model.Series:
    found = model.Series()
    for at, value in points:
        found.add(at, value)
    return found


def test_series_keep_an_hour():
    kept = series((0, 1), (1800, 2), (3700, 3))
    assert [at for at, _ in kept.points] == [1800, 3700]


def test_lag_growing_fires_once_more_than_five_minutes_before_has_held_for_five_minutes():
    growing = [(t, 1 + t / 10) for t in range(0, 601, 10)]
    assert model.lag_growing("g", series(*growing), 600).state == "firing"
    assert model.lag_growing("g", series(*growing[:10]), 90).state == "pending", "not yet for five minutes"
    flat_then_growing = [(t, 5) for t in range(0, 500, 10)] + [(t, t) for t in range(500, 601, 10)]
    assert model.lag_growing("g", series(*flat_then_growing), 600).state == "pending"


def test_lag_that_shrinks_or_is_zero_does_not_alert():
    assert model.lag_growing("g", series((0, 5), (10, 9), (20, 4)), 20) is None
    assert model.lag_growing("g", series((0, 0), (10, 0)), 10) is None
    assert model.lag_growing("g", series((0, 3), (10, 3)), 10) is None, "waiting, but not growing"


def test_dead_letters_alert_for_five_minutes_after_one_arrives():
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    assert model.dead_letters_recent([now - timedelta(minutes=4)], now).state == "firing"
    assert model.dead_letters_recent([now - timedelta(minutes=6)], now) is None


def test_sagas_past_deadline_and_outbox_age_use_the_rules_thresholds():
    assert model.sagas_past_deadline(None, 0) is None
    assert model.sagas_past_deadline(59, 2) is None
    assert "2 sagas" in model.sagas_past_deadline(61, 2).summary
    assert model.outbox_stale("capture", 30) is None
    assert model.outbox_stale("capture", 31).subject == "capture"


def test_conditions_are_pending_until_they_have_held_for_their_rules_for():
    since: dict = {}
    down = model.not_ready("routing", False, ["database"])
    assert model.not_ready("routing", True, []) is None
    assert [a.state for a in model.held([down], since, 100)] == ["pending"]
    assert [a.state for a in model.held([down], since, 159)] == ["pending"]
    assert [a.state for a in model.held([down], since, 160)] == ["firing"]
    assert model.held([], since, 170) == [] and since == {}, "recovered: forgotten"
    assert [a.state for a in model.held([down], since, 180)] == ["pending"], "down again: starts afresh"
    letters = model.dead_letters_recent([datetime.now(UTC)], datetime.now(UTC))
    assert [a.state for a in model.held([letters], {}, 0)] == ["firing"], "no `for:` in its rule"


def stuck(order_id: str, age: float, past: float | None = None) -> model.StuckOrder:
    return model.StuckOrder(order_id, "web", order_id, "routing", age, age, past)


def test_stuck_orders_past_their_deadline_first_then_the_old_ones_then_the_rest():
    orders = [stuck("young", 10), stuck("old", 2000), stuck("late", 50, past=5), stuck("later", 40, past=30),
              stuck("older", 5000), stuck("deadline-ahead", 60, past=-10), stuck("youngest", 1)]
    assert [o.order_id for o in model.stuck_first(orders, older_than=900)] == \
        ["later", "late", "older", "old", "deadline-ahead", "young", "youngest"]


def test_payloads_are_pretty_printed_json_or_text():
    assert model.pretty_payload(b'{"a":[1,2]}') == '{\n  "a": [\n    1,\n    2\n  ]\n}'
    assert model.pretty_payload(b"not json \xff") == "not json \ufffd"


def test_sparklines_are_numbers_only():
    svg = model.sparkline([1, 3, 2])
    assert svg.startswith("<svg") and "<polyline" in svg and "points=\"0.0,23.0 60.0,1.0 120.0,12.0\"" in svg
    assert "polyline" not in model.sparkline([1])


def test_durations_read_as_seconds_minutes_or_hours():
    assert [model.duration(s) for s in (None, 59.6, 150, 9000)] == ["-", "60s", "2m", "2.5h"]


def test_the_trace_id_is_the_traceparents_second_field():
    assert model.trace_id({"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}) == \
        "4bf92f3577b34da6a3ce929d0e0e4736"
    assert model.trace_id({}) is None
    assert model.trace_id({"traceparent": "00-\"><script>x</script>-00f067aa0ba902b7-01"}) is None


def test_the_trace_id_links_to_the_trace_backend_when_one_is_configured():
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    assert model.trace_link("http://127.0.0.1:16686/trace/{trace_id}", trace) == \
        f"http://127.0.0.1:16686/trace/{trace}"
    assert model.trace_link(None, trace) is None and model.trace_link("http://jaeger/", trace) is None
    assert model.trace_link("http://127.0.0.1:16686/trace/{trace_id}", None) is None


def hostile_letter() -> Shown:
    payload = b'{"note": "<script>alert(1)</script>", "x": "\\"><img src=x onerror=alert(2)>"}'
    return Shown(DeadLetter(consumer="oms.fulfillment.fulfillment.location-updates.v1",
                             source_topic="fulfillment.location-updates.v1", source_partition=0, source_offset=7,
                             reason="INVALID_ENVELOPE", detail="<b>bold</b> detail", original_key_b64=None,
                             original_value_b64=base64.b64encode(payload).decode(), original_size=len(payload),
                             failed_at=datetime.now(UTC)), 3, 41)


def _dead_letters_page(page: Page, **overrides) -> str:
    return TEMPLATES.get_template("dead_letters.html").render(**{
        "session": Sessions(PASSWORD, SECRET).session(Sessions(PASSWORD, SECRET).login("x", PASSWORD)),
        "path": "/ops/dead-letters", "page": page, "resolved": set(), "totals": [], "reasons": [], "services": [],
        "reason": "", "service": "", "show_resolved": False, "before": "", "newest": "/ops/dead-letters",
        "older": None, "audit": [], "message": None, "original": lambda item: b"", **overrides})


def test_a_dead_letters_page_says_how_many_records_it_could_not_read():
    assert 'id="unreadable">2 of them were not readable' in _dead_letters_page(Page([], None, 3, False, 2))
    assert 'id="unreadable"' not in _dead_letters_page(Page([], None, 3, False))


def test_dead_letter_payloads_and_details_are_escaped():
    html = _dead_letters_page(
        Page([hostile_letter()], None, 1, False),
        totals=[{"service": "<s>", "reason": "<r>", "letters": 1, "latest": datetime.now(UTC)}],
        reasons=["INVALID_ENVELOPE"], services=["fulfillment"], reason="\"><x>", message="<i>msg</i>",
        original=lambda item: base64.b64decode(item.letter.original_value_b64))
    assert "<script>" not in html and "<img" not in html and "<b>bold" not in html and "<i>msg" not in html
    assert "<s>" not in html and "<r>" not in html and "<x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;b&gt;bold&lt;/b&gt;" in html


def test_a_session_needs_the_password_and_a_cookie_signed_with_the_secret():
    sessions = Sessions(PASSWORD, SECRET)
    assert sessions.login("Olga", "wrong") is None
    assert sessions.login("   ", PASSWORD) is None, "a name for the audit"
    cookie = sessions.login(" Olga   Operator ", PASSWORD)
    session = sessions.session(cookie)
    assert session.operator == "Olga Operator" and sessions.csrf_ok(session, session.csrf)
    assert not sessions.csrf_ok(session, "forged") and not sessions.csrf_ok(session, None)
    assert Sessions(PASSWORD, "another-secret-entirely").session(cookie) is None
    assert sessions.session(cookie[:-2] + "xx") is None and sessions.session(None) is None
    assert Sessions(PASSWORD, SECRET, max_age=-1).session(cookie) is None, "expired"


def test_a_weak_password_or_secret_refuses_to_start():
    with pytest.raises(SystemExit):
        Sessions("short", SECRET)


def app_without_backends(tmp_path: Path) -> TestClient:
    """The app's routes with no database or Kafka behind them: what is refused before either is asked."""
    settings = Settings(kafka_bootstrap="127.0.0.1:1")
    console = Console(settings, Sessions(PASSWORD, SECRET), Sampler(settings, tmp_path, 5),
                      AuditLog(tmp_path / "audit.jsonl"))
    return TestClient(build_app(console), follow_redirects=False)


@pytest.mark.parametrize("path", ["/ops", "/ops/topics", "/ops/stuck", "/ops/orders?q=x", "/ops/dead-letters",
                                  "/ops/alerts"])
def test_every_page_asks_for_a_login_first(tmp_path, path):
    answer = app_without_backends(tmp_path).get(path, headers={"Authorization": "Bearer a-channel-key"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ops/login?next=")


def test_a_post_without_the_csrf_token_is_refused(tmp_path):
    app = app_without_backends(tmp_path)
    login = app.post("/ops/login", content="operator=Olga&password=right-password&next=/ops/alerts",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert login.status_code == 303 and login.headers["location"] == "/ops/alerts"
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ops" in cookie
    refused = app.post("/ops/dead-letters/replay", content="letter=x&csrf=forged",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert refused.status_code == 403


def test_a_wrong_password_sets_no_cookie_and_login_leads_only_inside_the_console(tmp_path):
    app = app_without_backends(tmp_path)
    wrong = app.post("/ops/login", content="operator=Olga&password=nope&next=/ops/topics",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong.status_code == 303 and "failed=1" in wrong.headers["location"] and "set-cookie" not in wrong.headers
    away = app.post("/ops/login", content="operator=Olga&password=right-password&next=https://evil.example/",
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert away.headers["location"] == "/ops/topics"


def test_the_audit_knows_what_was_replayed_and_resolved(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.append("Olga", "replay", "t/0/1", "g", "failed: broker down")
    assert audit.replayed("g", "t/0/1") is None, "a failed replay may be tried again"
    audit.append("Olga", "replay", "t/0/1", "g", "replayed as abc")
    audit.append("Ben", "resolve", "t/0/2", "g", "resolved")
    assert audit.replayed("g", "t/0/1").operator == "Olga"
    assert audit.resolved() == {("g", "t/0/2")}


def test_only_this_oms_topics_and_groups_are_sampled():
    assert ours("test-1.orders.events.v1", "test-1.") == "orders.events.v1"
    assert ours("test-1.orders.commands.v1.web", "test-1.") == "orders.commands.v1.web"
    assert ours("test-2.orders.events.v1", "test-1.") is None
    assert ours("test-1.orders.events.v1", "") is None, "another run's topics are not the deployment's"
    assert ours("__consumer_offsets", "") is None
    assert service_of_group("test-1.oms.capture.orders.commands.v1", "test-1.") == "capture"
    assert service_of_group("test-1.page-location-1", "test-1.") is None


def test_history_turns_samples_into_rates_and_alerts():
    history, first = History(), Sample(0.0, datetime.now(UTC), ends={"t": {0: 10, 1: 10}},
                                       readiness={"capture": (True, [])})
    history.add(first, None)
    assert history.alerts == []
    second = Sample(2.0, datetime.now(UTC), ends={"t": {0: 20, 1: 14}}, readiness={"capture": (False, ["db"])},
                    outbox={"capture": (3, 45.0)})
    history.add(second, first)
    assert history.rate_in["t"].latest() == 7.0
    assert {(a.name, a.subject, a.state) for a in history.alerts} == \
        {("OmsServiceNotReady", "capture", "pending"), ("OmsOutboxStale", "capture", "pending")}
    history.add(Sample(4.0, datetime.now(UTC), readiness={"capture": (True, [])}), second)
    assert history.alerts == [] and history.conditions_since == {}


def test_only_the_console_process_is_given_the_ops_credentials_and_its_login():
    from shared.settings import service_environment
    env = {name: "x" for name in ("OMS_OPS_KAFKA_PASSWORD", "OMS_OPS_READER_DB_PASSWORD", "OMS_CONSOLE_PASSWORD",
                                  "OMS_CONSOLE_SESSION_SECRET", "OMS_TRACKING_DB_PASSWORD")}
    assert set(service_environment(env, "console")) == set(env) - {"OMS_TRACKING_DB_PASSWORD"}
    assert set(service_environment(env, "tracking")) == {"OMS_TRACKING_DB_PASSWORD"}, "tracking only forwards /ops"


def test_a_groups_lag_covers_the_topic_it_is_named_for_before_its_first_commit():
    from aiokafka.structs import OffsetAndMetadata, TopicPartition

    from ops.console.sampler import group_lags
    ends = {"p.orders.events.v1": {0: 4, 1: 2}, "p.orders.commands.v1": {0: 3, 1: 0}}
    fresh = group_lags("p.oms.notification.orders.events.v1", "p.", {}, ends)
    assert [(r.group, r.service, r.topic, r.partition, r.committed, r.lag) for r in fresh] == [
        ("oms.notification.orders.events.v1", "notification", "orders.events.v1", 0, None, 4),
        ("oms.notification.orders.events.v1", "notification", "orders.events.v1", 1, None, 2)]
    committed = {TopicPartition("p.orders.commands.v1", 0): OffsetAndMetadata(1, "")}
    assert [(r.topic, r.partition, r.lag) for r in group_lags("p.oms.capture.orders.commands.v1", "p.", committed,
                                                            ends)] == [("orders.commands.v1", 0, 2),
                                                                       ("orders.commands.v1", 1, 0)]


def test_not_ready_before_the_first_sample(tmp_path):
    answer = app_without_backends(tmp_path).get("/health/ready")
    assert answer.status_code == 503 and answer.json() == {"ready": False, "problems": ["no sample yet"]}


def test_a_static_members_instance_number_and_partitions_come_from_the_group_description():
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

    from ops.console.sampler import member
    group = "p.oms.notification.orders.events.v1"
    assignment = ConsumerProtocolMemberAssignment(0, [("p.orders.events.v1", [3, 1])], b"").encode()
    found = member(group, "p.", f"{group}-2-0f8fad5b-d9cb-469f-a165-70867728950e", "oms-notification",
                   "/127.0.0.1", assignment)
    assert found == model.Member("2", "oms-notification", "127.0.0.1", (("orders.events.v1", 1),
                                                                      ("orders.events.v1", 3)))
    dynamic = member(group, "p.", "kcat-0f8fad5b-d9cb-469f-a165-70867728950e", "kcat", "/10.0.0.7", b"")
    assert (dynamic.instance, dynamic.partitions) == ("kcat", ())


def test_each_instance_owns_its_partitions_and_their_lag_and_an_empty_group_waits():
    from ops.console.sampler import GroupLag
    group = "oms.notification.orders.events.v1"
    lags = [GroupLag(group, "notification", "orders.events.v1", p, 0, 5, lag)
            for p, lag in enumerate([0, 2, 0, 4, 1, 0])]
    lags.append(GroupLag("oms.tracking.orders.events.v1", "tracking", "orders.events.v1", 0, None, 7, 7))
    groups = [model.GroupState(group, "notification", "Stable", (
                  model.Member("2", "c", "h", (("orders.events.v1", 3), ("orders.events.v1", 4),
                                               ("orders.events.v1", 5))),
                  model.Member("1", "c", "h", (("orders.events.v1", 0), ("orders.events.v1", 1),
                                               ("orders.events.v1", 2))))),
              model.GroupState("oms.tracking.orders.events.v1", "tracking", "Empty", ())]
    rows = model.instances(groups, lags)
    assert [(r.service, r.instance, r.state, r.lag) for r in rows] == [
        ("notification", "1", "Stable", 2), ("notification", "2", "Stable", 5), ("tracking", None, "Empty", 7)]
    assert rows[1].partitions == (("orders.events.v1", ((3, 4), (4, 1), (5, 0))),)
    assert rows[2].partitions == ()


def test_the_live_part_shows_each_instance_with_its_groups_state():
    sampler = Sampler(Settings(kafka_bootstrap="127.0.0.1:1"), Path("/nonexistent"), 5)
    sampler.latest = Sample(0.0, datetime.now(UTC), groups=[
        model.GroupState("oms.capture.orders.commands.v1", "capture", "PreparingRebalance",
                         (model.Member("1", "oms-capture", "127.0.0.1", (("orders.commands.v1", 0),)),
                          model.Member("<b>2</b>", "oms-capture", "127.0.0.1", ())))])
    from ops.console.app import _live
    html = _live(sampler)
    assert html.count('data-service="capture"') == 2 and 'data-state="PreparingRebalance"' in html
    assert "&lt;b&gt;2&lt;/b&gt;" in html and "<b>2" not in html


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"


def render(template: str, **values) -> str:
    session = Sessions(PASSWORD, SECRET).session(Sessions(PASSWORD, SECRET).login("x", PASSWORD))
    return TEMPLATES.get_template(template).render(session=session, path="/ops/x", **values)


def assert_escaped(html: str) -> None:
    assert "<script>alert" not in html and "<img" not in html and "onerror=alert(2)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_orders_page_escapes_what_came_from_messages_and_links_its_trace():
    now = datetime.now(UTC)
    row = {"order_id": "o", "channel": HOSTILE, "channel_order_id": HOSTILE, "status": HOSTILE,
           "customer_id": HOSTILE, "created_at": now}
    html = render("order.html", order=row, saga={"state": HOSTILE, "attempts": 1, "deadline_at": None},
                  trace_id=TRACE, trace_link=f"http://jaeger/trace/{TRACE}",
                  view={"payment": {"status": HOSTILE, "authorised": 1, "captured": None, "refunded": None}},
                  events=[{"at": now, "type": HOSTILE, "topic": HOSTILE, "data": {"note": HOSTILE}},
                          {"at": now, "type": "T", "topic": "t", "data": HOSTILE}],
                  saga_timeline=[{"at": now, "direction": "in", "message_type": HOSTILE, "saga_state": HOSTILE}],
                  fulfilment_orders=[{"location_id": HOSTILE, "status": HOSTILE, "carrier": HOSTILE,
                                      "tracking_number": HOSTILE, "purchase_order": HOSTILE, "updated_at": now}],
                  shipments=[{"location_id": HOSTILE, "carrier": HOSTILE, "tracking_number": HOSTILE,
                              "shipped_at": now}],
                  returns=[{"return_id": HOSTILE, "status": HOSTILE, "return_to": HOSTILE, "refunded": None}],
                  edits=[{"edit_id": HOSTILE, "created_at": now, "answer": None}],
                  notifications=[{"kind": HOSTILE, "channel": HOSTILE, "status": HOSTILE, "created_at": now}],
                  routing=[{"decided_at": now, "rule_set": HOSTILE, "explanation": HOSTILE}])
    assert_escaped(html)
    assert f'<a id="trace-id" href="http://jaeger/trace/{TRACE}"' in html
    assert "\\u003cscript\\u003e" in html, "the JSON data: tojson escapes < too"


def test_search_stuck_and_alerts_pages_escape_their_values():
    now = datetime.now(UTC)
    found = [{"order_id": "o", "channel": HOSTILE, "channel_order_id": HOSTILE, "customer_id": HOSTILE,
              "status": HOSTILE, "created_at": now}]
    assert_escaped(render("search.html", q=HOSTILE, found=found))
    assert_escaped(render("search.html", q=HOSTILE, found=[]))
    assert_escaped(render("stuck.html", orders=[model.StuckOrder("o", HOSTILE, HOSTILE, HOSTILE, 5, 5, None)],
                          steps=[{"state": HOSTILE, "orders": 1, "oldest": 5.0}], older_than=900.0))
    alert = model.Alert("OmsServiceNotReady", "critical", HOSTILE, HOSTILE, "firing")
    assert_escaped(render("alerts.html", alerts=[alert], sampled=object()))


def test_a_payload_escaping_half_a_surrogate_pair_is_shown_as_written_on_a_utf8_page():
    """A hostile sender's `"\\udfff"` decodes to a string UTF-8 cannot encode: the dead-letters page answered 500."""
    shown = model.pretty_payload(b'{"name": "a\\udfff", "city": "K\xc3\xb6ln"}')
    assert shown.encode("utf-8").decode("utf-8") == '{\n  "name": "a\\udfff",\n  "city": "K\u00f6ln"\n}'
