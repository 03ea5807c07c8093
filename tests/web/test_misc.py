"""Identity (JWT in header, query, cookie; demo; host provider), metrics, health, OpenAPI,
configuration and the CLI."""

from __future__ import annotations

import time

import jwt
import pytest
from quart import Request
from quart_trio import QuartTrio
from queuetasks.engine import Operator, OperatorId
from queuetasks.web import ConfigError, QueueTasks, Unauthenticated, WebConfig, cli
from queuetasks.web._config import load

BASE = "/api/v1/QueueTasks"
SECRET = "test-secret-" + "0123456789abcdef" * 4


async def test_token_in_query_and_cookie(h):
    token = h.token("op1")
    resp = await h.client.post(BASE + "/take-free", query_string={"access_token": token})
    assert resp.status_code == 200
    h.client.set_cookie("localhost", "access_token", h.token("op2"))
    resp = await h.client.post(BASE + "/take-free")
    assert resp.status_code == 200


@pytest.mark.parametrize("header", [
    "Bearer nonsense",
    "Basic dXNlcjpwYXNz",
    "Bearer " + jwt.encode({"sub": "x"}, SECRET + "-other", algorithm="HS256"),
    "Bearer " + jwt.encode({"sub": "x", "exp": 1}, SECRET, algorithm="HS256"),
    "Bearer " + jwt.encode({"grade": 1}, SECRET, algorithm="HS256"),
    "Bearer " + jwt.encode({"sub": "x", "grade": "high"}, SECRET, algorithm="HS256"),
    "Bearer " + jwt.encode({"sub": "x", "pools": "a"}, SECRET, algorithm="HS256"),
    "Bearer " + jwt.encode({"sub": "x"}, SECRET, algorithm="HS512"),
])
async def test_bad_tokens_give_401(h, header):
    resp = await h.client.post(BASE + "/take-free", headers={"Authorization": header})
    assert resp.status_code == 401
    assert (await resp.get_json())["success"] is False


async def test_verified_tokens_are_cached_but_still_expire(h, monkeypatch):
    """A token verified once is not verified again, but its expiry still applies."""
    token = h.token("op1", ttl=60)
    auth = {"Authorization": f"Bearer {token}"}
    decoded = []
    real = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **kw: decoded.append(a[0]) or real(*a, **kw))
    for _ in range(3):
        assert (await h.client.post(BASE + "/take-free", headers=auth)).status_code == 200
    assert decoded == [token]
    later = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: later)
    resp = await h.client.post(BASE + "/take-free", headers=auth)
    assert resp.status_code == 401
    assert "expired" in (await resp.get_json())["error"]
    # A bad signature is never cached: each use is checked and refused.
    tail = "AAAA" if token[-4:] != "AAAA" else "BBBB"
    forged = {"Authorization": f"Bearer {token[:-4]}{tail}"}
    for _ in range(2):
        assert (await h.client.post(BASE + "/take-free", headers=forged)).status_code == 401


async def test_demo_mode_identity_from_query(make_harness):
    async with make_harness(WebConfig()) as h:
        resp = await h.client.post(BASE + "/tasks", json={"taskId": "d1", "pool": "vip"})
        assert resp.status_code == 201
        q = {"operator": "alice", "grade": "2", "pools": "vip, default"}
        resp = await h.client.post(BASE + "/take-free", query_string=q)
        assert (await resp.get_json())["result"] == {"taskId": "d1"}
        resp = await h.client.post(BASE + "/take-free")
        assert resp.status_code == 401
        resp = await h.client.post(BASE + "/take-free",
                                   query_string={"operator": "bob", "grade": "x"})
        assert resp.status_code == 400


async def test_host_operator_provider():
    async def provider(request: Request) -> Operator:
        name = request.headers.get("X-User")
        if not name:
            raise Unauthenticated("no X-User header")
        return Operator(OperatorId(name))

    app = QuartTrio(__name__)
    ext = QueueTasks(app, operator_provider=provider, metrics_path=None, health_path=None,
                     openapi=False)
    async with app.test_app():
        client = app.test_client()
        assert (await client.post(BASE + "/take-free")).status_code == 401
        assert (await client.post(BASE + "/take-free",
                                  headers={"X-User": "u1"})).status_code == 200
        # No producer_check given: the producer API is refused.
        resp = await client.post(BASE + "/tasks", json={"taskId": "x"}, headers={"X-User": "u1"})
        assert resp.status_code == 403
        assert (await client.get(BASE + "/queue-operators",
                                 headers={"X-User": "u1"})).status_code == 200
        assert (await client.get("/metrics")).status_code == 404
    assert not ext.engine.running


async def test_metrics(h):
    async with h.sse("op1") as reader:
        await h.add("m1")
        await reader.next_event()
        await h.post("/m1/assign", "op1")
        await reader.next_event()
    resp = await h.client.get("/metrics")
    text = (await resp.get_data()).decode()
    assert resp.status_code == 200
    assert "queuetasks_waiting_operators 0.0" in text
    assert "queuetasks_open_streams" in text
    assert "queuetasks_pending_tasks 0.0" in text
    assert 'queuetasks_offers_total{outcome="offered"} 1.0' in text
    assert 'queuetasks_offers_total{outcome="assigned"} 1.0' in text
    assert "queuetasks_time_to_offer_seconds_count 1.0" in text
    assert "queuetasks_time_to_assign_seconds_count 1.0" in text


async def test_healthz(h):
    resp = await h.client.get("/healthz")
    assert resp.status_code == 200
    assert (await resp.get_json())["result"]["status"] == "ok"
    h.ext.start_drain()
    resp = await h.client.get("/healthz")
    assert resp.status_code == 503


async def test_openapi_and_swagger(h):
    spec = await (await h.client.get("/openapi.json")).get_json()
    paths = spec["paths"]
    for path, method in [("/take-free", "post"), ("/wait-sse", "get"),
                         ("/{task_id}/assign", "post"), ("/{task_id}/reject", "post"),
                         ("/exit", "delete"), ("/queue-operators", "get"), ("/tasks", "post"),
                         ("/tasks/{task_id}", "get"), ("/tasks/{task_id}", "delete"),
                         ("/stats", "get")]:
        operation = paths[BASE + path][method]
        assert operation["responses"], path
        assert operation["summary"], path
    assert "403" in paths[BASE + "/{task_id}/assign"]["post"]["responses"]
    assert spec["components"]["schemas"]["NewTask"]["required"] == ["taskId"]
    resp = await h.client.get("/docs")
    assert resp.status_code == 200
    assert "swagger" in (await resp.get_data()).decode().lower()


async def test_console_only_when_enabled(h, make_harness):
    assert (await h.client.get("/")).status_code == 404
    async with make_harness(WebConfig(console=True)) as demo:
        resp = await demo.client.get("/")
        assert resp.status_code == 200
        assert b"EventSource" in await resp.get_data()
        assert (await demo.client.get("/supervisor")).status_code == 200
        assert (await demo.client.get("/static/queuetasks/..%2Fcli.py")).status_code == 404


def test_needs_quart_trio():
    from quart import Quart

    with pytest.raises(TypeError):
        QueueTasks(Quart(__name__))


def test_config_precedence(tmp_path):
    toml = tmp_path / "qt.toml"
    toml.write_text('[queuetasks]\noffer_timeout = 10\nport = 9000\ncors_origin = "https://a"\n')
    env = {"QUEUETASKS_CONFIG": str(toml), "QUEUETASKS_OFFER_TIMEOUT": "20",
           "QUEUETASKS_JWT_SECRET": "s3cret", "QUEUETASKS_DISCONNECT_GRACE": "none"}
    config = load({"offer_timeout": 30.0}, env=env)
    assert config.offer_timeout == 30.0
    assert config.port == 9000
    assert config.cors_origin == "https://a"
    assert config.jwt_secret == "s3cret"
    assert config.disconnect_grace is None
    assert load({}, env=env).offer_timeout == 20.0


@pytest.mark.parametrize(("env", "text"), [
    ({"QUEUETASKS_PORT": "http"}, "port"),
    ({"QUEUETASKS_OFFER_TIMEOUT": "-1"}, "offer_timeout"),
    ({"QUEUETASKS_BASE_PATH": "api/"}, "base_path"),
    ({"QUEUETASKS_NOPE": "1"}, "nope"),
    ({"QUEUETASKS_CONFIG": "/nonexistent.toml"}, "cannot read"),
])
def test_config_errors_name_the_setting(env, text):
    with pytest.raises(ConfigError, match=text):
        load({}, env=env)


def test_cli_token_and_bad_config(capsys, monkeypatch):
    assert cli.main(["token", "op1", "--secret", SECRET, "--grade", "2", "--pools", "a,b"]) == 0
    token = capsys.readouterr().out.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "op1"
    assert claims["grade"] == 2
    assert claims["pools"] == ["a", "b"]
    monkeypatch.setenv("QUEUETASKS_PORT", "not-a-port")
    assert cli.main(["serve"]) == 2
    assert "port" in capsys.readouterr().err
