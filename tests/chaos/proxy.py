"""A seeded chaos TCP proxy: it sits between a client and a server on 127.0.0.1 and breaks
connections on purpose.

Each accepted connection gets its own ``random.Random(f"{seed}/{n}")``, ``n`` counting
connections from 0, and draws its faults from it one after the other, so the schedule of
faults is a pure function of the seed and the connection's rank: the same seed gives the
same faults at the same byte positions of the same connection, run after run. (Which
request a connection carries depends on the client's scheduling; the schedule does not.)
A fault is one of:

- ``REFUSE``: reset (RST) the connection as soon as it is accepted;
- ``RESET_REQUEST``: forward part of what the client sends, then reset both sides, so the
  server sees a request cut short;
- ``RESET_RESPONSE``: forward the request, then reset both sides when the server starts to
  answer: the server did the work and the client never hears of it;
- ``CUT``: forward part of the server's answer, then close both sides, with a reset or a
  plain FIN: a response cut in its head or, mostly, in its body;
- ``STALL``: after part of the answer, forward nothing for a while, then carry on (and draw
  the connection's next fault);
- ``STALL_REQUEST``: the same on the way in: part of the request, a pause, the rest, so
  requests sent on other connections meanwhile overtake it.

Where a fault strikes is drawn from an exponential distribution of bytes (request bytes for
the resets, response bytes for cuts and stalls), so long-lived keep-alive connections fail
too, not only fresh ones. The proxy is bounded: it injects at most ``max_faults`` faults and
none after ``active_for`` seconds, every stall lasts at most ``max_stall`` seconds, and
:meth:`ChaosProxy.calm` stops all faults at once. The proxy knows nothing about HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final
from urllib.parse import urlsplit

__all__ = ["ChaosConfig", "ChaosProxy", "ChaosStats", "Fault", "Plan", "draw_plan"]

_READ_SIZE: Final = 64 * 1024
_LINGER_RST: Final = struct.pack("ii", 1, 0)
_CLOSE_GRACE_S: Final = 2.0


class Fault(enum.StrEnum):
    """What the proxy does to a connection."""

    NONE = "none"
    REFUSE = "refuse"
    RESET_REQUEST = "reset-request"
    RESET_RESPONSE = "reset-response"
    CUT = "cut"
    STALL = "stall"
    STALL_REQUEST = "stall-request"


_UPSTREAM_FAULTS: Final = frozenset(
    {Fault.RESET_REQUEST, Fault.RESET_RESPONSE, Fault.STALL_REQUEST}
)

DEFAULT_WEIGHTS: Final[Mapping[Fault, float]] = {
    Fault.REFUSE: 1.0,
    Fault.RESET_REQUEST: 2.0,
    Fault.RESET_RESPONSE: 2.0,
    Fault.CUT: 3.0,
    Fault.STALL: 2.0,
    Fault.STALL_REQUEST: 1.0,
}


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    """How often and how hard the proxy breaks connections.

    Attributes:
        seed: the seed of the fault schedule.
        fault_rate: the chance that a fault is drawn at all for a new connection, and again
            after each stall; otherwise the connection stays healthy.
        weights: relative weights of the fault kinds.
        request_bytes: mean request bytes forwarded before a reset strikes.
        response_bytes: mean response bytes forwarded before a cut or a stall strikes.
        max_stall: the longest stall, in seconds (each is uniform in 0..this).
        max_faults: the most faults drawn in the proxy's life (None: no limit).
        active_for: seconds after start during which faults are drawn (None: always).
        schedule: explicit first plans: connection ``n`` gets ``schedule[n]`` instead of a
            random first draw, which aims a fault at a known request of a client that
            opens connections one at a time (its later plans are drawn as usual).
    """

    seed: int
    fault_rate: float = 1.0
    weights: Mapping[Fault, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    request_bytes: float = 64 * 1024
    response_bytes: float = 128 * 1024
    max_stall: float = 1.0
    max_faults: int | None = None
    active_for: float | None = None
    schedule: tuple[Plan, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.fault_rate <= 1.0:
            msg = f"fault_rate must be in [0, 1], got {self.fault_rate}"
            raise ValueError(msg)
        if Fault.NONE in self.weights or not any(w > 0 for w in self.weights.values()):
            msg = "weights need at least one fault kind with a positive weight (not NONE)"
            raise ValueError(msg)
        if self.request_bytes <= 0 or self.response_bytes <= 0 or self.max_stall < 0:
            msg = "request_bytes and response_bytes must be > 0, max_stall >= 0"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class Plan:
    """The next fault of one connection.

    Attributes:
        fault: what happens.
        after: bytes let through first, counted from when the plan was drawn: request bytes
            for the resets and ``STALL_REQUEST``, response bytes for ``CUT`` and ``STALL``.
        stall: seconds of silence for ``STALL`` and ``STALL_REQUEST``.
        rst: ``CUT`` ends with a reset (True) or a clean FIN (False).
    """

    fault: Fault = Fault.NONE
    after: int = 0
    stall: float = 0.0
    rst: bool = True


def draw_plan(config: ChaosConfig, rng: random.Random, *, first: bool) -> Plan:
    """The next plan from a connection's own generator."""
    if rng.random() >= config.fault_rate:
        return Plan()
    kinds = list(config.weights)
    fault = rng.choices(kinds, weights=[config.weights[k] for k in kinds])[0]
    if fault is Fault.REFUSE:
        # Only a new connection can be refused; later, the same draw resets at once.
        return Plan(fault) if first else Plan(Fault.RESET_REQUEST, after=0)
    if fault in _UPSTREAM_FAULTS:
        after = int(rng.expovariate(1 / config.request_bytes))
        if fault is Fault.STALL_REQUEST:
            return Plan(fault, after=after, stall=rng.uniform(0, config.max_stall))
        return Plan(fault, after=after)
    after = int(rng.expovariate(1 / config.response_bytes))
    if fault is Fault.CUT:
        return Plan(fault, after=after, rst=rng.random() < 0.5)
    return Plan(fault, after=after, stall=rng.uniform(0, config.max_stall))


@dataclass(frozen=True, slots=True)
class ChaosStats:
    """What the proxy did so far.

    Attributes:
        connections: connections accepted.
        planned: faults drawn for connections, by kind.
        injected: faults that actually struck, by kind (a plan goes unused when its
            connection closes before the point where it would strike).
        bytes_up: bytes forwarded client -> server.
        bytes_down: bytes forwarded server -> client.
        upstream_refused: connections the server refused (it was down).
    """

    connections: int
    planned: Mapping[str, int]
    injected: Mapping[str, int]
    bytes_up: int
    bytes_down: int
    upstream_refused: int

    @property
    def faults(self) -> int:
        """Faults that actually struck."""
        return sum(self.injected.values())


class _Abort(Exception):  # noqa: N818 - internal control flow, not an error
    """Raised inside a pump to end the connection as the plan says."""


class _Link:
    """One proxied connection: two pumps and the plans that break them."""

    def __init__(
        self,
        proxy: ChaosProxy,
        rng: random.Random,
        plan: Plan,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.proxy = proxy
        self.rng = rng
        self.plan = plan
        self.client_r, self.client_w = client
        self.up_r, self.up_w = upstream
        self.sent_up = 0
        self.sent_down = 0
        self.up_base = 0
        self.down_base = 0
        self.armed = False

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._pump_up())
            group.create_task(self._pump_down())

    def abort(self, *, rst: bool = True) -> None:
        for writer in (self.client_w, self.up_w):
            _shut(writer, rst=rst)

    def _strike(self) -> None:
        self.proxy._injected[self.plan.fault] += 1

    def _next_plan(self) -> None:
        self.plan = self.proxy._admit(draw_plan(self.proxy.config, self.rng, first=False))
        self.up_base, self.down_base = self.sent_up, self.sent_down
        self.armed = False

    async def _pump_up(self) -> None:
        try:
            while data := await self.client_r.read(_READ_SIZE):
                plan = self.plan if not self.proxy._calm else Plan()
                room = self.up_base + plan.after - self.sent_up
                if plan.fault in _UPSTREAM_FAULTS and not self.armed and room < len(data):
                    if plan.fault is Fault.RESET_REQUEST:
                        await self._write(self.up_w, data[: max(room, 0)], up=True)
                        self._strike()
                        self.abort()
                        return
                    if plan.fault is Fault.STALL_REQUEST:
                        await self._write(self.up_w, data[: max(room, 0)], up=True)
                        self._strike()
                        await self.proxy._pause(plan.stall)
                        data = data[max(room, 0) :]
                        self._next_plan()
                        await self._write(self.up_w, data, up=True)
                        continue
                    # RESET_RESPONSE: the request goes through; its answer will not.
                    self.armed = True
                await self._write(self.up_w, data, up=True)
            with contextlib.suppress(OSError, RuntimeError):
                if self.up_w.can_write_eof() and not self.up_w.is_closing():
                    self.up_w.write_eof()
        except (OSError, _Abort):
            self.abort()

    async def _pump_down(self) -> None:
        try:
            while data := await self.up_r.read(_READ_SIZE):
                await self._forward_down(data)
        except _Abort:
            self.abort(rst=self.plan.rst)
        except OSError:
            self.abort()
        else:
            # The server ended the connection: so does the client side.
            _shut(self.client_w, rst=False)
            _shut(self.up_w, rst=False)

    async def _forward_down(self, data: bytes) -> None:
        plan = self.plan if not self.proxy._calm else Plan()
        if plan.fault is Fault.RESET_RESPONSE and self.armed:
            self._strike()
            raise _Abort
        if plan.fault in (Fault.CUT, Fault.STALL):
            room = max(self.down_base + plan.after - self.sent_down, 0)
            if room < len(data):
                await self._write(self.client_w, data[:room], up=False)
                self._strike()
                if plan.fault is Fault.CUT:
                    raise _Abort
                await self.proxy._pause(plan.stall)
                data = data[room:]
                self._next_plan()
        await self._write(self.client_w, data, up=False)

    async def _write(self, writer: asyncio.StreamWriter, data: bytes, *, up: bool) -> None:
        if not data:
            return
        if writer.is_closing():
            raise _Abort
        writer.write(data)
        await writer.drain()
        if up:
            self.sent_up += len(data)
            self.proxy._bytes_up += len(data)
        else:
            self.sent_down += len(data)
            self.proxy._bytes_down += len(data)


def _shut(writer: asyncio.StreamWriter, *, rst: bool) -> None:
    """Close a connection: with a reset (SO_LINGER 0, then abort) or a plain close."""
    transport = writer.transport
    if transport.is_closing():
        return
    if rst:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        transport.abort()
    else:
        transport.close()


class ChaosProxy:
    """A TCP proxy on 127.0.0.1 that breaks connections to ``upstream`` by a seeded plan.

    Use it as an async context manager; :attr:`url` is then the base URL to give the client
    instead of the server's. Closing it resets every connection still open.
    """

    def __init__(self, upstream: str, config: ChaosConfig) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            msg = f"upstream must be a URL with a host and port, got {upstream!r}"
            raise ValueError(msg)
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.config = config
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._counter = itertools.count()
        self._started = 0.0
        self._calm = False
        self._faults_planned = 0
        self._planned: Counter[Fault] = Counter()
        self._injected: Counter[Fault] = Counter()
        self._bytes_up = 0
        self._bytes_down = 0
        self._refused = 0
        self._connections = 0
        self._handlers: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.errors: list[BaseException] = []
        self._closing = asyncio.Event()

    # -- life cycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]
        self._started = time.monotonic()

    async def aclose(self) -> None:
        """Stop listening and reset every open connection. Safe to call twice."""
        server, self._server = self._server, None
        self._closing.set()
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _shut(writer, rst=True)
        handlers = list(self._handlers)
        if handlers:
            _done, pending = await asyncio.wait(handlers, timeout=_CLOSE_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> ChaosProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- control and observation ------------------------------------------------------

    @property
    def url(self) -> str:
        """The proxy's base URL, e.g. ``http://127.0.0.1:41234``."""
        if self._port is None:
            msg = "the proxy is not started"
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._port}"

    def calm(self) -> None:
        """Inject no more faults, on new connections or on those already open."""
        self._calm = True

    def stats(self) -> ChaosStats:
        """A snapshot of the proxy's counters."""
        return ChaosStats(
            connections=self._connections,
            planned={str(k): v for k, v in sorted(self._planned.items())},
            injected={str(k): v for k, v in sorted(self._injected.items())},
            bytes_up=self._bytes_up,
            bytes_down=self._bytes_down,
            upstream_refused=self._refused,
        )

    def open_connections(self) -> int:
        """Client connections currently open through the proxy."""
        return len(self._writers)

    # -- connections ------------------------------------------------------------------

    def _admit(self, plan: Plan) -> Plan:
        """``plan``, unless the proxy is calm or past its bounds (then no fault)."""
        if plan.fault is Fault.NONE or not self._may_fault():
            return Plan()
        self._faults_planned += 1
        self._planned[plan.fault] += 1
        return plan

    async def _pause(self, seconds: float) -> None:
        """Sleep for a stall; end it (and the connection) when the proxy closes."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        if self._closing.is_set():
            raise _Abort

    def _may_fault(self) -> bool:
        config = self.config
        if self._calm:
            return False
        if config.max_faults is not None and self._faults_planned >= config.max_faults:
            return False
        return config.active_for is None or time.monotonic() - self._started < config.active_for

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self._connections += 1
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # Only aclose() cancels a handler, and only one that outlived its grace period.
            # It must not end cancelled: Python 3.11's start_server callback calls
            # task.exception() on it, which raises and gets logged as an error.
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            _shut(writer, rst=False)
            self._writers.discard(writer)
            self._handlers.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = next(self._counter)
        rng = random.Random(f"{self.config.seed}/{index}")
        schedule = self.config.schedule
        drawn = (
            schedule[index] if index < len(schedule) else draw_plan(self.config, rng, first=True)
        )
        plan = self._admit(drawn)
        if plan.fault is Fault.REFUSE:
            self._injected[Fault.REFUSE] += 1
            _shut(writer, rst=True)
            return
        try:
            upstream = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            # The server is down: the client sees a reset, as it would without the proxy.
            self._refused += 1
            _shut(writer, rst=True)
            return
        self._writers.add(upstream[1])
        try:
            await _Link(self, rng, plan, (reader, writer), upstream).run()
        finally:
            _shut(upstream[1], rst=False)
            self._writers.discard(upstream[1])
