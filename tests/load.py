"""Load with faults (tests/integration/test_load_faults.py): a bounded load
driver, a TCP proxy that can drop every connection, and the tally of what the
clients saw.

`Load` runs N client threads (32 by default) against a real server on loopback,
each sending the calls it is given in turn, at most `rate` requests a second
per client, until told to stop or its hard deadline passes (a test never hangs
on it). Every request is kept as a `Sent`: when it started and ended, its
status or why it got none (a timeout, or the connection dropped), its answer.
Answers are checked afterwards (`tally`), so a check may use what only the end
of the test knows (the new nightly output after a store swap).

`DroppingProxy` forwards 127.0.0.1:<port> to a server (Postgres) and, on
`drop(seconds)`, closes every open connection and closes each new one at once
for that long, as a database restart or a network cut looks to its clients.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

# How long each fault test runs under load, in seconds (the 60 s;
# `make test` exports a shorter one, docs/testing.md).
FAULT_SECONDS = float(os.environ.get("FAULT_SECONDS", "60"))
CLIENTS = 32
# requests a second per client at most: 32 clients offer ~130 req/s, load the
# 2 workers without starving a 2-core machine shared with other work
RATE_PER_CLIENT = 4.0
TIMEOUT_S = 10.0

Answer = dict[str, Any]
# a check of a 2xx answer: None when right, else what is wrong
Check = Callable[[Answer], str | None]


@dataclass(frozen=True)
class Call:
    """One request a client may send: the endpoint, its JSON body, and how to
    tell a right answer."""

    endpoint: str
    body: dict
    check: Check


@dataclass
class Sent:
    """One request as the client saw it (times: time.monotonic())."""

    endpoint: str
    key: str
    started: float
    ended: float
    status: int | None = None
    # "timeout" or "dropped" (the connection closed without an answer)
    failure: str | None = None
    answer: Answer | None = None
    error: str | None = None
    call: Call | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        if self.failure is not None:
            return self.failure
        return f"{self.status // 100}xx"


# which key a client sends: (a label for the tally, the key itself), asked
# before every request so a test can rotate keys under load
KeyOf = Callable[[int], tuple[str, str]]


class Load:
    """`clients` threads calling `url` until `stop()` or `max_s` seconds."""

    def __init__(
        self,
        url: str,
        calls: Sequence[Call],
        key_of: KeyOf,
        max_s: float,
        clients: int = CLIENTS,
        rate: float = RATE_PER_CLIENT,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        self.url = url
        self.calls = list(calls)
        self.key_of = key_of
        self.clients = clients
        self.interval = 1.0 / rate
        self.timeout_s = timeout_s
        self.sent: list[Sent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.t0 = time.monotonic()
        self.deadline = self.t0 + max_s

    def __enter__(self) -> Load:
        self.t0 = time.monotonic()
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 5)

    def at(self) -> float:
        """Seconds since the load started."""
        return time.monotonic() - self.t0

    def sleep_until(self, at: float) -> None:
        """Wait until `at` seconds into the load (returning early at the deadline)."""
        while self.at() < at and time.monotonic() < self.deadline:
            time.sleep(0.05)

    def _client(self, i: int) -> None:
        n = i  # the clients start at different calls
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set() and time.monotonic() < self.deadline:
                call = self.calls[n % len(self.calls)]
                n += 1
                started = time.monotonic()
                sent = self._send(client, call, i, started)
                with self._lock:
                    self.sent.append(sent)
                pause = started + self.interval - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)

    def _send(self, client: httpx.Client, call: Call, i: int, started: float) -> Sent:
        label, key = self.key_of(i)
        sent = Sent(call.endpoint, label, started, started, call=call)
        try:
            r = client.post(
                f"{self.url}{call.endpoint}",
                json=call.body,
                headers={"Authorization": f"Bearer {key}"},
            )
        except httpx.TimeoutException as exc:
            sent.failure, sent.error = "timeout", repr(exc)
        except httpx.TransportError as exc:
            sent.failure, sent.error = "dropped", repr(exc)
        else:
            sent.status = r.status_code
            if r.is_success:
                try:
                    sent.answer = r.json()
                except ValueError:
                    sent.answer = {"unparsable": r.text[:200]}
            else:
                sent.error = r.text[:300]
        sent.ended = time.monotonic()
        return sent

    def relative(self, t: float) -> float:
        """A time.monotonic() as seconds since the load started."""
        return t - self.t0


def wrong(sent: Sent) -> str | None:
    """Why a 2xx answer is wrong, or None (and None for any other answer)."""
    if sent.kind != "2xx" or sent.call is None:
        return None
    assert sent.answer is not None
    if "unparsable" in sent.answer:
        return f"not JSON: {sent.answer['unparsable']}"
    try:
        return sent.call.check(sent.answer)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return f"malformed answer ({exc!r}): {str(sent.answer)[:200]}"


@dataclass
class Tally:
    """What the clients of one fault test saw."""

    fault: str
    load: str
    requests: int
    ok: int
    client_errors: int
    server_errors: int
    timeouts: int
    dropped: int
    wrong: int
    # the 2xx answers' latency, 99th percentile
    p99_ms: float
    outcome: str = ""

    def row(self) -> dict:
        return {
            "fault": self.fault,
            "load": self.load,
            "requests": self.requests,
            "2xx": self.ok,
            "4xx": self.client_errors,
            "5xx": self.server_errors,
            "timeouts": self.timeouts,
            "dropped": self.dropped,
            "wrong": self.wrong,
            "p99_ms": self.p99_ms,
            "outcome": self.outcome,
        }


def tally(fault: str, load: Load, seconds: float) -> tuple[Tally, list[str]]:
    """The counts over every request sent, and the reasons of the wrong answers."""
    kinds = [s.kind for s in load.sent]
    latencies = sorted(s.ended - s.started for s in load.sent if s.kind == "2xx")
    p99 = (
        latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
        if latencies
        else 0
    )
    reasons = [f"{s.endpoint}: {why}" for s in load.sent if (why := wrong(s))]
    return (
        Tally(
            fault=fault,
            load=f"{load.clients} clients, {len({c.endpoint for c in load.calls})} "
            f"endpoints, {seconds:.0f} s",
            requests=len(kinds),
            ok=kinds.count("2xx"),
            client_errors=kinds.count("4xx"),
            server_errors=kinds.count("5xx"),
            timeouts=kinds.count("timeout"),
            dropped=kinds.count("dropped"),
            wrong=len(reasons),
            p99_ms=round(p99 * 1000),
        ),
        reasons,
    )


def table(rows: Sequence[dict]) -> str:
    """The rows as a Markdown table (for the test output and the docs)."""
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)


class DroppingProxy:
    """A TCP proxy on a free loopback port in front of `target` (host, port);
    `drop(seconds)` cuts every connection and refuses new ones meanwhile."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._down_until = 0.0
        self._closed = False
        self.cut = 0  # connections cut or refused while down
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> DroppingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.close()
        self._cut_all()

    def down(self) -> bool:
        return time.monotonic() < self._down_until

    def drop(self, seconds: float) -> None:
        """From now on for `seconds`: every connection is cut, each new one
        closed as soon as it is accepted."""
        self._down_until = time.monotonic() + seconds
        self._cut_all()

    def _cut_all(self) -> None:
        with self._lock:
            socks, self._open = list(self._open), set()
            self.cut += len(socks) // 2
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.down():
                self.cut += 1
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open -= {src, dst}
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
