"""Who may talk to the dashboard: the host names it answers to, and a token off loopback.

DNS rebinding: a web page on attacker.example can make a browser send requests to
127.0.0.1:8000 under the name attacker.example, and read the answers. Answering only requests
whose Host header names this server (localhost, 127.0.0.1, [::1], the address it is bound to,
and any added with --allowed-host) closes that door: such requests get 421.

Bound to a non-loopback address, anyone on the network can reach the server, so it also asks
for a token: the URL ``acc serve`` prints carries it as ``?token=``; opening the page with it
sets an HttpOnly cookie, which the page then sends with every request (no JavaScript change).
Scripts send ``Authorization: Bearer <token>``. ``?token=`` is taken on that page visit only,
never on an API call: a token in API URLs ends up in logs, histories and Referer headers.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import socket
from http.cookies import SimpleCookie
from urllib.parse import parse_qs

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
COOKIE = "acc_token"


def is_loopback(host: str) -> bool:
    if host.strip("[]") in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def names_of_this_machine() -> list[str]:
    """What a client on the network may call this machine (for a server bound to 0.0.0.0)."""
    names = {socket.gethostname(), socket.getfqdn()}
    with contextlib.suppress(OSError):
        names |= {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)}
    return sorted(names)


def host_name(header: str) -> str:
    """The name in a Host header, without its port: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware: 421 for a Host this server is not, 401 without the token (if any)."""

    def __init__(self, app, allowed_hosts: list[str], token: str | None = None) -> None:
        self.app, self.token = app, token
        self.allowed = {host_name(h) for h in [*LOOPBACK_NAMES, *allowed_hosts]}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan events
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = host_name(headers.get("host", ""))
        if host not in self.allowed:
            why = (
                f"this server does not answer to the host name {host!r} (DNS rebinding "
                f"protection); it answers to: {', '.join(sorted(self.allowed))}. "
                "Start it with --allowed-host NAME to add one."
            )
            return await _refuse(send, 421, why)
        if self.token is None:
            return await self.app(scope, receive, send)
        page_visit = scope["path"] == "/" and scope["method"] in ("GET", "HEAD")
        given = _token_of(scope, headers, page_visit)
        if given is None or not secrets.compare_digest(given, self.token):
            why = "this server needs its token: open the URL `acc serve` printed (it ends ?token=…)"
            if not page_visit and _query_token(scope) is not None:
                why = (
                    "?token= is taken only when opening the page (/?token=…), which sets a "
                    "cookie; API calls send the token as 'Authorization: Bearer <token>'"
                )
            return await _refuse(send, 401, why)
        if not page_visit or _query_token(scope) is None:
            return await self.app(scope, receive, send)

        async def send_with_cookie(message) -> None:  # remember the token for the page
            if message["type"] == "http.response.start":
                cookie = f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/"
                message["headers"] = [*message["headers"], (b"set-cookie", cookie.encode())]
            await send(message)

        return await self.app(scope, receive, send_with_cookie)


def _query_token(scope) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _token_of(scope, headers: dict[str, str], page_visit: bool) -> str | None:
    """The bearer header's token, else the cookie's, else (opening the page only) the URL's."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = SimpleCookie(headers.get("cookie", ""))
    if COOKIE in cookie:
        return cookie[COOKIE].value
    return _query_token(scope) if page_visit else None


async def _refuse(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }  # fmt: skip
    )
    await send({"type": "http.response.body", "body": body})
