"""Request size limit: an ASGI middleware answering 413 before a body is parsed.

BentoML 1.4 has no limit of its own on a request body. A declared
`Content-Length` over the limit is refused at once; a body without one (chunked)
is read up to the limit and replayed to the app, or refused when it runs over.
"""

from __future__ import annotations

import json

from serving.api.auth import ASGIApp, Message, Receive, Scope, Send, send_json


def _too_large(limit: int, size: str) -> bytes:
    return json.dumps(
        {
            "error": f"request body of {size} exceeds the limit of {limit:,} bytes "
            "(api.max_request_mb); send fewer records per request"
        }
    ).encode()


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length > self.max_bytes:
                await _refuse(send, _too_large(self.max_bytes, f"{length:,} bytes"))
                return
            await self.app(scope, receive, send)
            return
        # no declared length: buffer up to the limit, then replay
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await _refuse(send, _too_large(self.max_bytes, "more bytes"))
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(send: Send, body: bytes) -> None:
    await send_json(send, 413, body, [(b"connection", b"close")])
