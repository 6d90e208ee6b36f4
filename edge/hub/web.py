"""The officers' tablet web app (FastAPI): sign-in, live alert queue (SSE), decisions.

Access rule: nothing but the sign-in page (and its stylesheet) is served without a valid
session: not the app's script, not the alert list, not the event stream, not an image.
Pages redirect to /login; API calls get 401 with no data. Sessions are random tokens in an
HttpOnly, SameSite=Strict cookie; only their hash is stored. Decisions are POSTed as JSON
with a custom header, which a cross-site form cannot produce.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edge.errors import EdgeError
from edge.hub.config import HubConfig
from edge.hub.metrics import hub_health
from edge.hub.push import PushError
from edge.hub.service import Hub, card_event
from edge.hub.tls import check_tls, is_loopback_host
from edge.link.schema import DECISIONS, OUTCOMES, is_id

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "static"
COOKIE = "edge_session"
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "notify.js": "text/javascript"}
# the PWA's icons are public (the install prompt fetches them without a session)
_PUBLIC_ASSETS = {"icon-192.png": "image/png", "icon-512.png": "image/png"}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; manifest-src 'self'; worker-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class _SecurityHeaders:
    """Pure ASGI middleware (does not buffer SSE): CSP, no caching, no sniffing, no framing."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                for k, v in (
                    (b"content-security-policy", _CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                    (b"cache-control", b"no-store"),
                ):
                    if k not in names:
                        headers.append((k, v))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _read_web(name: str) -> str:
    return (WEB_DIR / name).read_text(encoding="utf-8")


def create_app(hub: Hub) -> FastAPI:
    """The tablet app bound to a started :class:`Hub`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    cfg = hub.cfg
    ttl = cfg.http.session_hours * 3600

    def officer_of(request: Request) -> str | None:
        if hub.store is None:
            return None
        return hub.store.session_officer(request.cookies.get(COOKIE))

    def require(request: Request) -> str:
        officer = officer_of(request)
        if officer is None:
            hub.metrics.http_unauthorized.inc()
            raise HTTPException(status_code=401, detail="sign in required")
        return officer

    def login_page(error: str = "", status: int = 200) -> HTMLResponse:
        html = _read_web("login.html")
        if error:
            html = html.replace("<!--ERROR-->", f'<p class="error" role="alert">{error}</p>')
        return HTMLResponse(html, status_code=status)

    @app.get("/login", response_class=HTMLResponse)
    def get_login() -> HTMLResponse:
        return login_page()

    @app.get("/login.css")
    def login_css() -> Response:
        return Response(_read_web("login.css"), media_type="text/css")

    # probes for orchestrators, the one other exception to the sign-in rule: check names and
    # booleans only (edge.hub.metrics.hub_checks), nothing about alerts, officers or nodes
    probes = hub_health(hub)

    @app.get("/healthz")
    def healthz() -> Response:
        status, ctype, body = probes.healthz()
        return Response(body, status_code=status, media_type=ctype)

    @app.get("/readyz")
    def readyz() -> Response:
        status, ctype, body = probes.readyz()
        return Response(body, status_code=status, media_type=ctype)

    throttled_log = _Every(60.0)

    @app.post("/login")
    async def post_login(request: Request) -> Response:
        body = await request.body()
        if len(body) > 4096:
            hub.metrics.login_failures.labels("bad_input").inc()
            return login_page("Sign-in refused.", 400)
        try:
            form = parse_qs(body.decode("utf-8"), max_num_fields=4)
        except (UnicodeDecodeError, ValueError):
            form = {}
        name = (form.get("officer") or [""])[0].strip()
        password = (form.get("password") or [""])[0]
        client = request.client.host if request.client else ""
        try:
            ok, reason = await run_in_threadpool(hub.officers.check, name, password, client)
        except EdgeError as exc:  # unreadable officers file: refuse, say so in the log
            log.error("sign-in impossible: %s", exc)
            hub.metrics.login_failures.labels("officers_file").inc()
            return login_page("Sign-in is unavailable: the hub's officer list is unreadable.", 503)
        if not ok:
            hub.metrics.login_failures.labels(reason).inc()
            if reason != "throttled" or throttled_log.due():
                # throttled attempts cost a guesser nothing: logged at most once a minute
                log.warning("refused sign-in (%s) from %s", reason, client)
            if reason == "throttled":
                wait = await run_in_threadpool(hub.officers.throttle.wait_s, name, client)
                msg = (f"Too many failed attempts from this device. Try again in "
                       f"{max(1, math.ceil(wait))} s.")
                return login_page(msg, 429)
            return login_page("Unknown officer or wrong password.", 401)
        assert hub.store is not None
        token = hub.store.create_session(name, ttl)
        hub.metrics.logins.inc()
        log.info("officer %s signed in", name)
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(
            COOKIE, token, max_age=int(ttl), httponly=True, samesite="strict",
            secure=cfg.http.cookie_secure, path="/",
        )
        return resp

    @app.post("/logout")
    def logout(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        if token and hub.store is not None:
            hub.store.delete_session(token)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
        return resp

    @app.get("/")
    def index(request: Request) -> Response:
        if officer_of(request) is None:
            hub.metrics.http_unauthorized.inc()
            return RedirectResponse("/login", status_code=303)
        return HTMLResponse(_read_web("index.html"))

    @app.get("/static/{name}")
    def asset(name: str, request: Request) -> Response:
        if name in _PUBLIC_ASSETS:
            return Response((WEB_DIR / name).read_bytes(), media_type=_PUBLIC_ASSETS[name])
        require(request)
        if name not in _ASSETS:
            raise HTTPException(status_code=404)
        return Response(_read_web(name), media_type=_ASSETS[name])

    @app.get("/manifest.webmanifest")
    def manifest() -> Response:
        return Response(_read_web("manifest.webmanifest"), media_type="application/manifest+json")

    @app.get("/sw.js")
    def service_worker() -> Response:
        # at the root so its scope is the whole app; it caches only the app shell
        return Response(_read_web("sw.js"), media_type="text/javascript",
                        headers={"Service-Worker-Allowed": "/"})

    @app.get("/api/me")
    def me(request: Request) -> dict[str, Any]:
        return {"officer": require(request), "node_lost_after_s": cfg.ui.node_lost_after_s,
                "undo_s": cfg.ui.undo_s, "outcomes": list(OUTCOMES), "server_time": time.time()}

    @app.get("/api/alerts")
    def list_alerts(request: Request, open_only: bool = False, limit: int = 100,
                    deployment: str | None = None, before: float | None = None,
                    before_id: str = "") -> dict[str, Any]:
        """Newest first; the next page: ``before`` / ``before_id`` = the ``received_at`` and
        ``alert_id`` of the last card of this one."""
        require(request)
        assert hub.store is not None
        limit = max(1, min(limit, 500))
        if (before_id and not is_id(before_id)) or (before is not None
                                                     and not math.isfinite(before)):
            raise HTTPException(status_code=400, detail="bad before / before_id")
        cursor = (before, before_id) if before is not None else None
        cards = [card_event(c) for c in hub.store.list_alerts(open_only, limit, deployment,
                                                              cursor)]
        return {"alerts": cards, "server_time": time.time()}

    @app.get("/api/alerts/{alert_id}")
    def get_alert(alert_id: str, request: Request) -> dict[str, Any]:
        require(request)
        assert hub.store is not None
        card = hub.store.get_alert(alert_id) if is_id(alert_id) else None
        if card is None:
            raise HTTPException(status_code=404)
        return card_event(card)

    @app.get("/api/alerts/{alert_id}/{which}.jpg")
    def image(alert_id: str, which: str, request: Request) -> Response:
        require(request)
        assert hub.store is not None
        if not is_id(alert_id) or which not in ("probe", "reference"):
            raise HTTPException(status_code=404)
        data = hub.store.image(alert_id, which)
        if data is None:
            raise HTTPException(status_code=404)
        return Response(data, media_type="image/jpeg")

    @app.post("/api/alerts/{alert_id}/decision")
    async def decide(alert_id: str, request: Request) -> Response:
        officer = await run_in_threadpool(require, request)
        if request.headers.get("x-edge-request") != "1":
            hub.metrics.decisions_refused.labels("csrf").inc()
            raise HTTPException(status_code=403, detail="missing request header")
        body = await request.body()
        try:
            data = json.loads(body) if len(body) <= 1024 else None
        except (ValueError, UnicodeDecodeError):
            data = None
        decision = data.get("decision") if isinstance(data, dict) else None
        if not isinstance(decision, str) or decision not in DECISIONS:
            hub.metrics.decisions_refused.labels("bad_value").inc()
            raise HTTPException(status_code=400, detail="decision must be one of "
                                + ", ".join(DECISIONS))
        if not is_id(alert_id):
            hub.metrics.decisions_refused.labels("not_found").inc()
            raise HTTPException(status_code=404)
        status, card = await run_in_threadpool(hub.decide, alert_id, decision, officer)
        if status == "not_found":
            hub.metrics.decisions_refused.labels("not_found").inc()
            raise HTTPException(status_code=404)
        if status == "already":
            hub.metrics.decisions_refused.labels("already_decided").inc()
            return JSONResponse({"status": "already_decided", "card": card_event(card or {})
                                 if card else None}, status_code=409)
        log.info("officer %s: %s on alert %s", officer, decision, alert_id)
        return JSONResponse({"status": "ok", "card": card_event(card) if card else None})

    async def checked_body(request: Request, alert_id: str) -> tuple[str, dict[str, Any]]:
        """(officer, JSON object body) of a state-changing request, or the HTTP refusal."""
        officer = await run_in_threadpool(require, request)
        if request.headers.get("x-edge-request") != "1":
            hub.metrics.decisions_refused.labels("csrf").inc()
            raise HTTPException(status_code=403, detail="missing request header")
        if not is_id(alert_id):
            hub.metrics.decisions_refused.labels("not_found").inc()
            raise HTTPException(status_code=404)
        body = await request.body()
        try:
            data = json.loads(body) if 0 < len(body) <= 1024 else {}
        except (ValueError, UnicodeDecodeError):
            data = None
        if not isinstance(data, dict):
            hub.metrics.decisions_refused.labels("bad_value").inc()
            raise HTTPException(status_code=400, detail="body must be a JSON object")
        return officer, data

    @app.post("/api/alerts/{alert_id}/undo")
    async def undo(alert_id: str, request: Request) -> Response:
        officer, _ = await checked_body(request, alert_id)
        status, card = await run_in_threadpool(hub.undo, alert_id, officer)
        if status in ("not_found", "not_decided"):
            hub.metrics.decisions_refused.labels("not_found").inc()
            raise HTTPException(status_code=404, detail="no decision to undo")
        if status in ("final", "not_yours"):
            hub.metrics.decisions_refused.labels("undo_" + status).inc()
            detail = ("too late: the decision is final" if status == "final"
                      else "only the officer who decided can undo it")
            return JSONResponse({"status": status, "detail": detail,
                                 "card": card_event(card) if card else None}, status_code=409)
        return JSONResponse({"status": "ok", "card": card_event(card) if card else None})

    @app.post("/api/alerts/{alert_id}/outcome")
    async def outcome(alert_id: str, request: Request) -> Response:
        officer, data = await checked_body(request, alert_id)
        value = data.get("outcome")
        if not isinstance(value, str) or value not in OUTCOMES:
            hub.metrics.decisions_refused.labels("bad_value").inc()
            raise HTTPException(status_code=400, detail="outcome must be one of "
                                + ", ".join(OUTCOMES))
        status, card = await run_in_threadpool(hub.set_outcome, alert_id, value, officer)
        if status == "not_found":
            hub.metrics.decisions_refused.labels("not_found").inc()
            raise HTTPException(status_code=404)
        if status in ("not_final", "already"):
            hub.metrics.decisions_refused.labels("outcome_" + status).inc()
            detail = ("the decision is not final yet (undo window)" if status == "not_final"
                      else "an outcome is already recorded")
            return JSONResponse({"status": status, "detail": detail,
                                 "card": card_event(card) if card else None}, status_code=409)
        log.info("officer %s: outcome %s on alert %s", officer, value, alert_id)
        return JSONResponse({"status": "ok", "card": card_event(card) if card else None})

    @app.get("/api/push/key")
    def push_key(request: Request) -> dict[str, Any]:
        """The hub's VAPID public key (applicationServerKey); 404 when push is off."""
        require(request)
        if hub.push is None:
            raise HTTPException(status_code=404, detail="web push is not configured")
        return {"public_key": hub.push.public_key}

    @app.post("/api/push/subscribe")
    async def push_subscribe(request: Request) -> Response:
        officer = await run_in_threadpool(require, request)
        if request.headers.get("x-edge-request") != "1":
            raise HTTPException(status_code=403, detail="missing request header")
        if hub.push is None:
            raise HTTPException(status_code=404, detail="web push is not configured")
        body = await request.body()
        try:
            data = json.loads(body) if 0 < len(body) <= 4096 else None
        except (ValueError, UnicodeDecodeError):
            data = None
        try:
            await run_in_threadpool(hub.push.subscribe, data, request.cookies.get(COOKIE, ""),
                                    officer)
        except PushError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        log.info("officer %s: tablet subscribed to web push", officer)
        return JSONResponse({"status": "ok"}, status_code=201)

    @app.get("/api/nodes")
    def nodes(request: Request) -> dict[str, Any]:
        require(request)
        return {"nodes": hub.node_status(), "server_time": time.time()}

    @app.get("/api/deployments")
    def deployments(request: Request) -> dict[str, Any]:
        """The control room's view: per deployment, its alerts and its nodes' cameras."""
        require(request)
        return {"deployments": hub.deployments_overview(), "server_time": time.time()}

    @app.get("/api/events")
    async def events(request: Request) -> Response:
        token = request.cookies.get(COOKIE)
        officer = await run_in_threadpool(officer_of, request)
        if officer is None:
            hub.metrics.http_unauthorized.inc()
            raise HTTPException(status_code=401, detail="sign in required")

        async def stream() -> AsyncIterator[bytes]:
            q = hub.bus.subscribe()
            hub.metrics.sse_clients.inc()
            try:
                yield b"retry: 1000\n\n"
                next_status = 0.0
                next_auth = time.monotonic() + 5
                while not hub.stopping:
                    now = time.monotonic()
                    if now >= next_status:
                        next_status = now + 1.0
                        payload = {"nodes": hub.node_status(), "server_time": time.time()}
                        yield _sse("status", payload)
                    if now >= next_auth:
                        next_auth = now + 5
                        if hub.store is None or (
                            await run_in_threadpool(hub.store.session_officer, token)
                        ) is None:
                            yield _sse("signed_out", {})
                            return
                    try:
                        ev = await asyncio.wait_for(q.get(), timeout=max(0.05, next_status
                                                                         - time.monotonic()))
                    except TimeoutError:
                        continue
                    if ev is None:
                        return
                    if ev["type"] in ("alert", "decision"):
                        yield _sse(ev["type"], ev["card"])
                    elif ev["type"] == "nodes":
                        next_status = 0.0
                    elif ev["type"] == "purged":
                        yield _sse("purged", {})
            finally:
                hub.bus.unsubscribe(q)
                hub.metrics.sse_clients.dec()

        return StreamingResponse(
            stream(), media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    app.add_middleware(_SecurityHeaders)
    return app


class _Every:
    """``due()`` is true at most once per ``period_s`` (rate-limits a log line)."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self._last = -period_s

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.period_s:
            return False
        self._last = now
        return True


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def check_web_transport(host: str, tls: tuple[Path, Path] | None, allow_plain_http: bool
                        ) -> None:
    """Refuse plain HTTP off loopback and unusable cert/key pairs, with one line each."""
    if tls is None and not allow_plain_http and not is_loopback_host(host):
        # like ZeroMQ without CURVE: passwords and face crops must not cross a network
        raise EdgeError(
            f"refusing plain HTTP on non-loopback http.host {host}: set [http] tls_cert and "
            "tls_key (edge keys tls), or allow_plain_http = true behind a TLS proxy")
    if tls is not None:
        check_tls(tls[0], tls[1], host)


def config_tls(cfg: HubConfig) -> tuple[Path, Path] | None:
    http = cfg.http
    return (Path(http.tls_cert), Path(http.tls_key)) if http.tls_cert and http.tls_key else None


class HubServer:
    """Hub + web app served by uvicorn in a background thread (tests, benchmarks, embedding)."""

    def __init__(self, hub: Hub, host: str = "127.0.0.1", port: int = 0,
                 tls: tuple[Path, Path] | None = None, allow_plain_http: bool = False) -> None:
        self.hub = hub
        self.host = host
        self.tls = tls
        check_web_transport(host, tls, allow_plain_http)
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise EdgeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        self.port = self._sock.getsockname()[1]
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(hub), log_level="warning", access_log=False,
                timeout_graceful_shutdown=2, lifespan="off",
                ssl_certfile=str(tls[0]) if tls else None,
                ssl_keyfile=str(tls[1]) if tls else None,
            )
        )
        self._thread: threading.Thread | None = None
        orig_exit = self.server.handle_exit

        def handle_exit(sig: int, frame: Any) -> None:
            hub.stopping = True  # end open SSE streams so shutdown doesn't wait for them
            hub.bus.publish(None)
            orig_exit(sig, frame)

        self.server.handle_exit = handle_exit  # type: ignore[method-assign]

    @classmethod
    def from_config(cls, hub: Hub) -> HubServer:
        """The web server as ``[http]`` says: host, port, TLS or the plain-HTTP exception."""
        http = hub.cfg.http
        return cls(hub, http.host, http.port, tls=config_tls(hub.cfg),
                   allow_plain_http=http.allow_plain_http)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    def serve(self) -> None:
        """Serve in this (main) thread until SIGINT/SIGTERM."""
        try:
            self.server.run(sockets=[self._sock])
        finally:
            self._sock.close()

    def start(self) -> HubServer:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, name="hub-http",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise EdgeError("hub web server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.hub.stopping = True
        self.hub.bus.publish(None)
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._sock.close()
