"""Who a request comes from, kept where no other client can read it (issue 22).

A visitor is a cryptographically random id in a signed, ``HttpOnly`` cookie (``r1v_visitor``;
``SameSite=Lax``, ``Secure`` over https; on a Hugging Face Space, where the page runs in a
cross-site frame, ``SameSite=None; Secure; Partitioned``). Nothing in the page state, the page's
``/config``, or ``localStorage`` identifies a visitor, so a leaked Gradio ``session_hash`` or a
copied storage value gives nothing. With a Space's OAuth login the visitor is their ``hf:<name>``.

:class:`Gate` is the ASGI middleware on the FastAPI app Gradio runs on. For every HTTP request it

- reads and verifies the cookie (HMAC-SHA256 with a server-side key, ``R1V_COOKIE_SECRET`` or
  ``<data dir>/cookie_secret``; never served), or mints a new id and sets the cookie on the reply;
  the id goes into ``scope["state"]`` where :meth:`Identity.visitor` reads it from ``gr.Request``;
- binds each Gradio ``session_hash`` to the first visitor with a valid cookie that uses it: the queue,
  its stream, Stop, cancel and the heartbeat refuse (403) a hash another visitor owns; Gradio's ``deep_link`` (a
  saved copy of a session's page state, fetchable by anyone holding the hash) is turned off;
- keeps one client address (``request.client.host``; with ``R1V_TRUSTED_PROXIES=N``, the N-th
  ``X-Forwarded-For`` entry from the right) from holding more than ``R1V_WAITING_PER_ADDRESS``
  queued or running events, so ids minted in bulk cannot fill the queue (429 with a message);
- sends ``X-Frame-Options`` / ``frame-ancestors`` (``R1V_FRAME_ANCESTORS``), ``nosniff`` and a
  ``Referrer-Policy``; keeps ``/monitoring`` closed unless ``R1V_MONITORING_TOKEN`` is set and sent
  as ``Authorization: Bearer <token>``.

Wiring (``app.py``)::

    ident = Identity.from_env()
    visitor = ident.visitor(request)            # in a handler: raises StoreError when unknown
    demo.launch(app_kwargs={"middleware": [ident.middleware()]}, enable_monitoring=ident.monitoring)

A test acts as a visitor by keeping the cookie: ``gradio_client.Client(url)`` keeps the one set on
its first ``/config``; ``Client(url, httpx_kwargs={"cookies": {"r1v_visitor": value}})`` reuses a visitor's cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from starlette.middleware import Middleware

from tutor.errors import StoreError

log = logging.getLogger(__name__)

COOKIE = "r1v_visitor"
MAX_AGE_S = 400 * 24 * 3600  # the longest a browser keeps a cookie
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{32}$")
_SIG_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Requests whose JSON body names a session_hash (the queue, a direct run, cancel).
_BODY_PATHS = ("/queue/join", "/run/predict", "/cancel")
_MAX_BODY = 16 * 1024 * 1024
_BOUND_MAX = 200_000  # session hashes remembered (the oldest forgotten first)

MESSAGES = {
    "busy": ("Too many requests are waiting from your network. Please wait for them to finish and try again.",
             "来自你所在网络的等待请求太多了。请等它们完成后再试。"),
    "not_yours": ("This session belongs to another visitor. Please reload the page.",
                  "这个会话属于另一位访问者。请刷新页面。"),
    "no_visitor": ("Your session could not be identified. Please reload the page (cookies must be allowed).",
                   "无法识别你的会话。请刷新页面（需要允许 Cookie）。"),
    "monitoring": ("Monitoring needs the monitoring token.", "监控需要监控令牌。"),
    "not_found": ("Not found.", "未找到。"),
    "too_large": ("The request is too large.", "请求太大了。"),
}


def _lang(headers: dict[bytes, bytes]) -> int:
    """0 (English) or 1 (Chinese), from the request's Accept-Language."""
    return 1 if headers.get(b"accept-language", b"").lower().lstrip().startswith(b"zh") else 0


def load_secret() -> bytes:
    """The cookie signing key: ``R1V_COOKIE_SECRET``, else one kept (mode 600) in the data directory."""
    if os.environ.get("R1V_COOKIE_SECRET"):
        return os.environ["R1V_COOKIE_SECRET"].encode()
    path = secret_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip().encode()


def secret_path() -> Path:
    from tutor import settings

    return settings.data_dir() / "cookie_secret"


@dataclass
class Identity:
    """The visitor cookie, the session binding and the per-address queue share (see the module doc)."""

    secret: bytes
    trusted_proxies: int = 0
    waiting_per_address: int = 8
    frame_ancestors: str = "'self'"
    cross_site: bool = False  # a Space: the page is framed by huggingface.co
    monitoring_token: str | None = None
    _bound: OrderedDict = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def from_env(cls, env: dict | None = None) -> Identity:
        env = dict(os.environ if env is None else env)
        space = bool(env.get("SPACE_ID"))
        return cls(
            secret=env["R1V_COOKIE_SECRET"].encode() if env.get("R1V_COOKIE_SECRET") else load_secret(),
            trusted_proxies=int(env.get("R1V_TRUSTED_PROXIES") or 0),
            waiting_per_address=max(1, int(env.get("R1V_WAITING_PER_ADDRESS") or 8)),
            frame_ancestors=env.get("R1V_FRAME_ANCESTORS") or ("'self' https://huggingface.co" if space else "'self'"),
            cross_site=space or env.get("R1V_COOKIE_SAMESITE", "").lower() == "none",
            monitoring_token=env.get("R1V_MONITORING_TOKEN") or None,
        )

    @classmethod
    def shared(cls) -> Identity:
        """The process's one Identity (from the environment): ``build_app`` and ``launch_kwargs``
        default to it, so the handlers and the middleware agree."""
        global _SHARED
        if _SHARED is None:
            _SHARED = cls.from_env()
        return _SHARED

    # -- the cookie -------------------------------------------------------------------------------

    def _sig(self, vid: str) -> str:
        mac = hmac.new(self.secret, b"r1v-visitor:" + vid.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, vid: str) -> str:
        return f"{vid}.{self._sig(vid)}"

    def verify(self, value: str | None) -> str | None:
        """The id in a cookie value, or None when it is missing, malformed or not signed by us."""
        if not value or value.count(".") != 1:
            return None
        vid, sig = value.split(".")
        if not _ID_RE.match(vid) or not _SIG_RE.match(sig) or not hmac.compare_digest(sig, self._sig(vid)):
            return None
        return vid

    @staticmethod
    def new_id() -> str:
        return secrets.token_urlsafe(24)  # 192 random bits, 32 characters

    def set_cookie_header(self, vid: str, https: bool) -> bytes:
        attrs = [f"{COOKIE}={self.sign(vid)}", "Path=/", f"Max-Age={MAX_AGE_S}", "HttpOnly"]
        if self.cross_site:
            attrs += ["SameSite=None", "Secure", "Partitioned"]
        else:
            attrs += ["SameSite=Lax"] + (["Secure"] if https else [])
        return "; ".join(attrs).encode()

    # -- from a handler ---------------------------------------------------------------------------

    def visitor(self, request: Any) -> str:
        """The store id of the request's visitor: their HF login, else the cookie's id (``v:<id>``).

        Raises ``StoreError("bad_user")`` when the request carries neither (no middleware)."""
        hf = _hf_user(request)
        if hf:
            return hf
        vid = _state(request).get("r1v_visitor")
        if not vid:
            en, zh = MESSAGES["no_visitor"]
            raise StoreError("bad_user", en, zh, "request without a visitor cookie")
        return f"v:{vid}"

    def address(self, request: Any) -> str:
        """The client address the middleware attributed the request to ("?" when unknown)."""
        return _state(request).get("r1v_address") or "?"

    def client_address(self, scope: dict, headers: dict[bytes, bytes]) -> str:
        host = (scope.get("client") or ("?", 0))[0]
        if self.trusted_proxies > 0:
            hops = [h.strip() for h in headers.get(b"x-forwarded-for", b"").decode("latin-1").split(",") if h.strip()]
            if len(hops) >= self.trusted_proxies:
                return hops[-self.trusted_proxies]
        return host

    # -- session hashes ---------------------------------------------------------------------------

    def bind(self, session_hash: str, vid: str, claim: bool = True) -> bool:
        """True when ``session_hash`` is (now) this visitor's; False when another visitor holds it.
        ``claim=False`` (a request without a valid cookie, whose id is new each time) binds nothing."""
        owner = self._bound.get(session_hash)
        if owner is None:
            if not claim:
                return True
            self._bound[session_hash] = vid
            if len(self._bound) > _BOUND_MAX:
                self._bound.popitem(last=False)
            return True
        return hmac.compare_digest(owner, vid)

    def middleware(self) -> Middleware:
        return Middleware(Gate, identity=self)


_SHARED: Identity | None = None


def public_text(text: str, lang: str, server_urls: Any) -> str:
    """``text`` as a visitor may see it: the internal model-server address (``server_urls``: one or
    several spellings of it) replaced by a generic name."""
    urls = [server_urls] if isinstance(server_urls, str) else list(server_urls or [])
    for url in sorted({u.rstrip("/") for u in urls if u}, key=len, reverse=True):
        if lang == "zh":
            text = text.replace(f"{url} 上的", "").replace(url, "模型服务器")
        else:
            text = text.replace(f" at {url}", "").replace(f"on {url}", "on the model server") \
                .replace(url, "the model server")
    return text


def server_urls(engine: Any) -> list[str]:
    """A served model's address as its messages spell it (``webui.config.LazyEngine`` of kind http)."""
    if getattr(engine, "kind", None) != "http":
        return []
    return [engine.target, getattr(getattr(engine, "_engine", None), "base_url", None) or ""]


def _state(request: Any) -> dict:
    raw = getattr(request, "request", None) if request is not None else None
    scope = getattr(raw, "scope", None)
    return (scope or {}).get("state") or {}


def _hf_user(request: Any) -> str | None:
    """The Hugging Face login of the visitor, when the Space has OAuth on and they signed in."""
    try:
        info = request.request.session.get("oauth_info") if request is not None else None
        name = (info or {}).get("userinfo", {}).get("preferred_username")
        return f"hf:{name}" if name else None
    except Exception:  # noqa: BLE001 - no session middleware: OAuth is off
        return None


def _waiting(app: Any, address: str) -> int:
    """Events from ``address`` queued or running in the Gradio app's queue."""
    try:
        q = app.get_blocks()._queue
    except Exception:  # noqa: BLE001 - not a Gradio app (or no queue yet)
        return 0
    events = [e for eq in list(q.event_queue_per_concurrency_id.values()) for e in list(eq.queue)]
    events += [e for job in list(q.active_jobs) if job for e in job]
    n = 0
    for e in events:
        scope = getattr(getattr(e, "request", None), "scope", None) or {}
        n += (scope.get("state") or {}).get("r1v_address") == address
    return n


class Gate:
    """ASGI middleware: the visitor cookie, session binding, per-address share, headers (module doc)."""

    def __init__(self, app: Any, identity: Identity):
        self.app, self.identity = app, identity

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        ident = self.identity
        headers = {k.lower(): v for k, v in scope.get("headers") or []}
        path = scope.get("path", "")
        lang = _lang(headers)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed Cookie header: a new visitor
            cookie = SimpleCookie()
        vid = ident.verify(cookie[COOKIE].value if COOKIE in cookie else None)
        fresh = vid is None
        if fresh:
            vid = ident.new_id()
        address = ident.client_address(scope, headers)
        state = scope.setdefault("state", {})
        state["r1v_visitor"], state["r1v_address"] = vid, address
        proto = headers.get(b"x-forwarded-proto", b"").split(b",")[0].strip()
        https = scope.get("scheme") == "https" or proto == b"https"

        async def reply(status: int, key: str) -> None:
            body = json.dumps({"detail": MESSAGES[key][lang], "error": MESSAGES[key][lang]},
                              ensure_ascii=False).encode()
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", b"application/json; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})

        # Gradio's deep links save a session's page state for anyone holding its session hash.
        query = scope.get("query_string", b"").decode("latin-1")
        if path.endswith("/deep_link") or "deep_link=" in query:
            await reply(404, "not_found")
            return
        if "monitoring" in path.split("/") or path.rstrip("/").endswith("/monitoring"):
            auth = headers.get(b"authorization", b"")
            token = ident.monitoring_token
            if not token or not hmac.compare_digest(auth, f"Bearer {token}".encode()):
                await reply(403, "monitoring")
                return

        hashes = _query_hashes(query) + _path_hashes(path)
        if scope.get("method") == "POST" and path.endswith(_BODY_PATHS):
            body, more = b"", True
            while more:
                msg = await receive()
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
                if len(body) > _MAX_BODY:
                    await reply(413, "too_large")
                    return
            try:
                data = json.loads(body or b"{}")
                if isinstance(data, dict) and isinstance(data.get("session_hash"), str):
                    hashes.append(data["session_hash"])
            except ValueError:
                pass  # Gradio answers a malformed body itself
            receive = _replay(body, receive)

        if any(not ident.bind(h, vid, claim=not fresh) for h in hashes):
            log.warning("refused a session hash owned by another visitor (%s %s)", scope.get("method"), path)
            await reply(403, "not_yours")
            return
        queued = path.endswith("/queue/join") or (scope.get("method") == "POST" and "/gradio_api/call/" in path)
        if queued and _waiting(scope.get("app"), address) >= ident.waiting_per_address:
            log.info("refused a queue join from %s: %d waiting", address, ident.waiting_per_address)
            await reply(429, "busy")
            return

        extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
                 (b"content-security-policy", f"frame-ancestors {ident.frame_ancestors}".encode())]
        if ident.frame_ancestors.strip() == "'self'":
            extra.append((b"x-frame-options", b"SAMEORIGIN"))
        if fresh:
            extra.append((b"set-cookie", ident.set_cookie_header(vid, https)))

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers") or []}
                message = {**message, "headers": [*(message.get("headers") or []),
                                                  *((k, v) for k, v in extra if k == b"set-cookie" or k not in names)]}
            await send(message)

        await self.app(scope, receive, wrapped)


def _replay(body: bytes, rest: Any) -> Any:
    """An ASGI ``receive`` giving the already-read ``body`` once, then what ``rest`` gives (the disconnect)."""
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return await rest()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _query_hashes(query: str) -> list[str]:
    from urllib.parse import parse_qs

    return [h for h in parse_qs(query).get("session_hash", []) if h]


def _path_hashes(path: str) -> list[str]:
    m = re.search(r"/heartbeat/([^/]+)$", path)
    return [m.group(1)] if m else []
