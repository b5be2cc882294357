"""JSON request bodies may not repeat a key within one object.

A JSON parser keeps the last of two equal keys, so ``{"grid": {"temperature": [0.5],
"temperature": [2]}}`` would sweep 2 alone and ``{"params": {"lr": 0.1, "lr": 1}}`` would run
with 1, without a word. The CLI refuses a repeated ``--grid`` axis or ``-p`` parameter; this
middleware refuses the API's equivalent with a 422 naming the key, before any route reads it.
"""

from __future__ import annotations

import json


class DuplicateKey(ValueError):
    """A JSON object with the same key twice."""


def _no_repeats(pairs: list[tuple[str, object]]) -> dict:
    seen: dict[str, object] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKey(key)
        seen[key] = value
    return seen


def repeated_key(body: bytes) -> str | None:
    """The first key a JSON object in ``body`` repeats (None: none, or not JSON at all,
    which FastAPI then refuses in its own words)."""
    try:
        json.loads(body, object_pairs_hook=_no_repeats)
    except DuplicateKey as exc:
        return str(exc)
    except ValueError:
        return None
    return None


class UniqueKeys:
    """ASGI middleware: a JSON body is read whole, checked, and handed on unchanged."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not _is_json(scope):
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return await self.app(scope, _replay([message]), send)
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        key = repeated_key(body) if body else None
        if key is not None:
            return await _refuse(send, key)
        await self.app(scope, _replay([{"type": "http.request", "body": body}], receive), send)


def _is_json(scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media = value.decode("latin-1").split(";")[0].strip().lower()
            return media == "application/json" or media.endswith("+json")
    return False


def _replay(messages: list[dict], then=None):
    """A receive() that gives ``messages`` first, then waits on the real one (a disconnect)."""

    async def receive():
        if messages:
            return messages.pop(0)
        return await then() if then else {"type": "http.disconnect"}

    return receive


async def _refuse(send, key: str) -> None:
    detail = [
        {
            "loc": ["body"],
            "msg": f"the key {key!r} is given twice in one JSON object; give it once "
            "(with all its values)",
            "type": "duplicate_key",
        }
    ]
    body = json.dumps({"detail": detail}).encode("ascii")
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 422, "headers": headers})
    await send({"type": "http.response.body", "body": body})
