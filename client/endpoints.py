"""Several servers behind one client: which endpoint a try goes to, and which are down.

``Client`` and ``AsyncClient`` share this module; only the transport differs.

* An :class:`Endpoints` pool holds the servers' addresses. It is built from
  what a client's ``url`` says: one address (``"triton:8001"``), several
  (``"h1:8001,h2:8001"`` or ``["h1:8001", "h2:8001"]``), or a DNS name to
  expand into one endpoint per address it resolves to (``"dns:///NAME:PORT"``,
  gRPC's own spelling: a Kubernetes headless Service, for one), looked up again
  every ``resolve_every`` seconds. Every endpoint must serve the same model
  repository: what a model is (``model_info``) is learned once, from whichever
  answers, and shared.
* :meth:`Endpoints.pick` gives each try the healthy endpoint with the fewest
  calls in flight, round-robin among equals: sequential calls alternate, and
  a slower server gets less.
* An endpoint whose try failed at the connection (refused, reset, DNS, the
  server stopping: ``TritonizeError.endpoint_down``) is set aside for
  ``cooldown`` seconds; after that the next call tries it again, and a success
  makes it healthy. While every endpoint is set aside, calls still try them
  (the one whose cool-down ends first, first): a pool never refuses a call by
  itself.
* A :class:`Route` is one call's way through the pool. A try that fails with
  a retryable status (``RetryPolicy.retryable``: the one place that decides
  it) is sent again at once to an endpoint the call has not tried yet
  (``RetryPolicy.failover``); when all have failed, the policy's backoff
  applies before the next round, within the call's deadline. An error that is
  the request's fault (``InvalidInput``, ``ModelNotFound``...) is raised at
  once, wherever it came from. Retrying is safe because tritonize models are
  stateless: an inference sent twice (a server killed while it ran it, and
  another one asked again) answers the same and changes nothing.

A server that vanishes without closing its connections (a host lost, a
network cut) cannot be told from a slow one: a try in flight there ends at
the call's deadline (``DeadlineExceeded``), and gRPC's connect timeout marks
it down for the calls after.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Generic, Iterable, List, Optional, Sequence, Set, Tuple, TypeVar, Union

from tritonize.client.errors import DeadlineExceeded, ServerUnavailable, TritonizeError, translate_error
from tritonize.client.retry import RetryPolicy

DNS_SCHEME = "dns:///"
DEFAULT_GRPC_PORT = 8001

Lookup = Callable[[str, int], Sequence[str]]
"""``lookup(host, port)``: the ``"ADDRESS:PORT"`` endpoints a name stands for (``resolve_addresses`` by default).

It raises ``OSError`` (``socket.gaierror`` is one) when the name cannot be found now."""


def resolve_addresses(host: str, port: int) -> List[str]:
    """Every TCP address ``host`` resolves to (``socket.getaddrinfo``), as ``"IP:PORT"`` / ``"[IPv6]:PORT"``."""
    found: List[str] = []
    for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = str(sockaddr[0])
        address = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
        if address not in found:
            found.append(address)
    return sorted(found)


@dataclass(frozen=True)
class Source:
    """One item of a client's ``url``: an address used as is, or a DNS name to resolve."""

    text: str
    host: str = ""  # set for a DNS name
    port: int = 0

    @property
    def resolves(self) -> bool:
        return bool(self.host)

    @property
    def unresolved(self) -> str:
        """The name itself as a gRPC target, tried while it resolves to nothing."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> "Source":
        text = text.strip()
        if not text.startswith("dns:"):
            return cls(text)
        rest = ""
        for prefix in (DNS_SCHEME, "dns://"):  # gRPC's spelling, and the one without an empty authority
            if text.startswith(prefix):
                rest = text[len(prefix):]
                break
        if not rest or "/" in rest:
            raise ValueError(
                f"url {text!r}: a name to resolve is written dns:///NAME:PORT (three slashes; "
                "a DNS server of its own is not supported), e.g. 'dns:///triton-headless:8001'"
            )
        host, port = rest, DEFAULT_GRPC_PORT
        if rest.startswith("["):  # [IPv6]:PORT
            closing = rest.find("]")
            host, tail = rest[1:closing], rest[closing + 1:]
            if tail:
                port = cls._port(text, tail.lstrip(":"))
        elif ":" in rest:
            host, _, port_text = rest.rpartition(":")
            port = cls._port(text, port_text)
        if not host:
            raise ValueError(f"url {text!r} names no host: write dns:///NAME:PORT")
        return cls(text, host=host, port=port)

    @staticmethod
    def _port(text: str, port_text: str) -> int:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"url {text!r}: the port must be a number from 1 to 65535, got {port_text!r}")
        return int(port_text)


def parse_urls(url: Any) -> List[Source]:
    """What a client's ``url`` names: a str (maybe ``"h1:8001,h2:8001"``) or a list of them."""
    shown = "a non-empty str such as 'localhost:8001' (or 'h1:8001,h2:8001', or a list of them)"
    if isinstance(url, str):
        items = [url]
    elif isinstance(url, (list, tuple)) and url and all(isinstance(u, str) for u in url):
        items = list(url)
    else:
        raise ValueError(f"url must be {shown}, got {url!r}")
    if not any(item.strip() for item in items):
        raise ValueError(f"url must be {shown}, got {url!r}")
    sources: List[Source] = []
    for item in items:
        for part in item.split(","):
            if not part.strip():
                raise ValueError(f"url {url!r} has an empty item: separate the servers with single commas")
            source = Source.parse(part)
            if source not in sources:
                sources.append(source)
    return sources


@dataclass
class EndpointState:
    """What the pool knows of one endpoint."""

    address: str
    server_name: Optional[str] = None  # the DNS name it was resolved from (what a TLS certificate names)
    down_until: float = 0.0  # time.monotonic() until which it is set aside; 0: healthy
    in_flight: int = 0
    answered: int = 0
    failed: int = 0
    last_error: str = ""

    def is_down(self, now: float) -> bool:
        return self.down_until > now


@dataclass(frozen=True)
class EndpointStatus:
    """A snapshot of one endpoint, for logs and dashboards (``Endpoints.status()``)."""

    address: str
    healthy: bool
    down_for: float  # seconds of cool-down left; 0 when healthy
    in_flight: int
    answered: int
    failed: int
    last_error: str


class Endpoints:
    """The servers a client spreads its calls over, with the health of each.

    >>> pool = Endpoints("h1:8001,h2:8001", cooldown=2.0)
    >>> client = Client(pool)                      # or simply Client("h1:8001,h2:8001")

    * ``urls``: one address, a comma-separated str of several, a list of
      them; an item ``dns:///NAME:PORT`` stands for every address ``NAME``
      resolves to (``socket.getaddrinfo``), looked up again every
      ``resolve_every`` seconds (pods come and go), and every ``cooldown``
      seconds while the lookup fails (then the name itself is tried, and gRPC
      says why it cannot be reached).
    * ``cooldown``: seconds an endpoint whose connection failed is set aside.
    * ``lookup``: another way to find a name's addresses (service discovery
      other than DNS): ``lookup(host, port) -> ["IP:PORT", ...]``.

    Thread-safe; a pool may be shared by several clients, sync and async.
    """

    def __init__(
        self,
        urls: Union[str, Sequence[str]],
        *,
        cooldown: float = 2.0,
        resolve_every: float = 30.0,
        lookup: Optional[Lookup] = None,
    ) -> None:
        for name, value in (("cooldown", cooldown), ("resolve_every", resolve_every)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
                    or value == float("inf"):
                raise ValueError(f"Endpoints.{name} must be a finite number of seconds >= 0, got {value!r}")
        self.sources = parse_urls(urls)
        self.url = ",".join(source.text for source in self.sources)
        self.cooldown = float(cooldown)
        self.resolve_every = float(resolve_every)
        self.lookup: Lookup = lookup or resolve_addresses
        self._lock = threading.Lock()
        self._resolving = threading.Lock()
        self._states: Dict[str, EndpointState] = {}
        self._order: List[str] = []
        self._next = 0
        self._resolved_at: Dict[str, float] = {}  # source text -> when it was last looked up
        self._retry_resolution: Dict[str, bool] = {}  # source text -> its last lookup failed
        self._resolved: Dict[str, List[str]] = {}  # source text -> its addresses
        for source in self.sources:
            if not source.resolves:
                self._resolved[source.text] = [source.text]
        self._rebuild()

    def __repr__(self) -> str:
        return f"Endpoints({self.url!r}, addresses={self.addresses})"

    # -- addresses -------------------------------------------------------------
    @property
    def addresses(self) -> List[str]:
        with self._lock:
            return list(self._order)

    def _rebuild(self) -> None:
        with self._lock:
            order: List[str] = []
            names: Dict[str, Optional[str]] = {}
            for source in self.sources:
                for address in self._resolved.get(source.text) or [source.unresolved]:
                    if address not in order:
                        order.append(address)
                        names[address] = source.host or None
            self._states = {
                address: self._states.get(address) or EndpointState(address, server_name=names[address])
                for address in order
            }
            self._order = order
            self._next %= max(1, len(order))

    def stale(self) -> bool:
        """Whether a DNS name is due to be looked up (never, for a pool of plain addresses)."""
        now = time.monotonic()
        for source in self.sources:
            if not source.resolves:
                continue
            last = self._resolved_at.get(source.text)
            if last is None:
                return True
            every = self.cooldown if self._retry_resolution.get(source.text) else self.resolve_every
            if now - last >= every:
                return True
        return False

    def refresh(self, force: bool = False) -> None:
        """Look the DNS names up again (blocking), one thread at a time.

        While one thread looks up, the others go on with the addresses the
        pool has; only before a name's first lookup do they wait for it. A name
        that cannot be resolved keeps the addresses it had; one that never
        resolved is tried as is, so that the call says why.
        """
        first = any(s.resolves and s.text not in self._resolved_at for s in self.sources)
        if not self._resolving.acquire(blocking=first or force):
            return  # another thread is at it
        try:
            if not force and not self.stale():
                return  # another thread just did it
            for source in self.sources:
                if not source.resolves:
                    continue
                try:
                    addresses = [str(a) for a in self.lookup(source.host, source.port)]
                except OSError:
                    addresses = []
                now = time.monotonic()
                self._resolved_at[source.text] = now
                self._retry_resolution[source.text] = not addresses
                if addresses:
                    self._resolved[source.text] = addresses
            self._rebuild()
        finally:
            self._resolving.release()

    def server_name(self, address: str) -> Optional[str]:
        with self._lock:
            state = self._states.get(address)
            return state.server_name if state else None

    # -- health ----------------------------------------------------------------
    def pick(self, avoid: Iterable[str] = ()) -> str:
        """The endpoint for the next try (counted in flight until ``release``).

        Healthy endpoints first, the fewest calls in flight first, round-robin
        among equals; ``avoid`` (those this call already tried) only if nothing
        else is left.
        """
        avoided = set(avoid)
        now = time.monotonic()
        with self._lock:
            count = len(self._order)
            start = self._next

            def rank(index: int) -> Tuple[bool, bool, float, int, int]:
                state = self._states[self._order[index]]
                down = state.is_down(now)
                return (state.address in avoided, down, state.down_until if down else 0.0, state.in_flight,
                        (index - start) % count)

            chosen = min(range(count), key=rank)
            self._next = (chosen + 1) % count
            state = self._states[self._order[chosen]]
            state.in_flight += 1
            return state.address

    def untried(self, tried: Iterable[str]) -> List[str]:
        """The endpoints not in ``tried``."""
        tried_set = set(tried)
        with self._lock:
            return [address for address in self._order if address not in tried_set]

    def release(self, address: str, *, error: Optional[TritonizeError] = None, counted: bool = True) -> None:
        """A try on ``address`` ended: answered (``error`` None), or failed; a connection failure sets it aside.

        ``counted=False``: it ended otherwise (cancelled, a local error): only the in-flight count changes.
        """
        with self._lock:
            state = self._states.get(address)
            if state is None:  # DNS dropped it meanwhile
                return
            state.in_flight = max(0, state.in_flight - 1)
            if not counted:
                return
            if error is None:
                state.answered += 1
                state.down_until = 0.0
                return
            state.failed += 1
            state.last_error = str(error)
            if error.endpoint_down:
                state.down_until = time.monotonic() + self.cooldown

    def mark_up(self, address: str) -> None:
        with self._lock:
            state = self._states.get(address)
            if state is not None:
                state.down_until = 0.0

    def mark_down(self, address: str, reason: str = "") -> None:
        with self._lock:
            state = self._states.get(address)
            if state is not None:
                state.down_until = time.monotonic() + self.cooldown
                state.last_error = reason or state.last_error

    def probe_order(self) -> List[str]:
        """Every endpoint, healthy ones first (for ``is_live``/``is_ready``)."""
        now = time.monotonic()
        with self._lock:
            return sorted(self._order, key=lambda a: self._states[a].is_down(now))

    def probes(self, timeout: Optional[float]) -> Iterable[Tuple[str, Optional[float]]]:
        """``(address, seconds left)`` for ``is_live``/``is_ready``: healthy endpoints first, until ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for address in self.probe_order():
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return
            yield address, left

    def probed(self, address: str, error: Optional[Exception] = None) -> None:
        """What a health probe of ``address`` found: it answered, or failed with ``error`` (tritonclient's)."""
        if error is None:
            self.mark_up(address)
        elif translate_error(error, address, None).endpoint_down:
            self.mark_down(address, str(error))

    def status(self) -> List[EndpointStatus]:
        now = time.monotonic()
        with self._lock:
            return [
                EndpointStatus(s.address, not s.is_down(now), max(0.0, s.down_until - now), s.in_flight,
                               s.answered, s.failed, s.last_error)
                for s in (self._states[a] for a in self._order)
            ]


def as_endpoints(url: Union[str, Sequence[str], Endpoints]) -> Endpoints:
    """A client's ``url`` as a pool (a pool is used as is): a ``ValueError`` names what is wrong."""
    return url if isinstance(url, Endpoints) else Endpoints(url)


class Route:
    """One call's tries over the pool, under its deadline and retry policy.

    The client's loop::

        route = Route(pool, policy, timeout, model)
        while True:
            address, left = route.next()          # DeadlineExceeded when no time is left
            try:
                result = send(address, left)
            except InferenceServerException as exc:
                wait = route.failed(address, exc)  # raises the error when the call gives up
                sleep(wait); continue
            except BaseException:
                route.abandoned(address); raise
            route.answered(address); return result
    """

    def __init__(self, pool: Endpoints, policy: RetryPolicy, timeout: Optional[float], model: Optional[str]) -> None:
        self.pool, self.policy, self.timeout, self.model = pool, policy, timeout, model
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.retry = 0  # rounds waited for so far
        self.tried: Set[str] = set()  # the endpoints tried in this round
        self.errors: Dict[str, TritonizeError] = {}  # the last error of each endpoint tried, in order

    def next(self) -> Tuple[str, Optional[float]]:
        left = None if self.deadline is None else self.deadline - time.monotonic()
        if left is not None and left <= 0:
            raise DeadlineExceeded(
                f"model {self.model!r} on {self.pool.url}: deadline of {self.timeout}s exceeded{self._so_far()}",
                url=self.pool.url, model=self.model,
            )
        address = self.pool.pick(avoid=self.tried)
        self.tried.add(address)
        return address, left

    def answered(self, address: str) -> None:
        self.pool.release(address)

    def abandoned(self, address: str) -> None:
        self.pool.release(address, counted=False)

    def failed(self, address: str, exc: Any) -> float:
        """A try on ``address`` failed with ``exc`` (an ``InferenceServerException``).

        Returns the seconds to wait before the next try (0: fail over at once),
        or raises the error the call ends with.
        """
        error = translate_error(exc, address, self.model)
        self.pool.release(address, error=error)
        self.errors.pop(address, None)
        self.errors[address] = error
        if self.policy.fails_over(error.status) and self.pool.untried(self.tried):
            return 0.0
        wait = self.policy.next_wait(error.status, self.retry, self.deadline, time.monotonic(), self.started)
        if wait is None:
            raise self._final(error)
        self.retry += 1
        self.tried.clear()  # a new round: every endpoint may be tried again
        return wait

    def _so_far(self) -> str:
        if not self.errors:
            return ""
        return "; the servers said: " + "; ".join(f"{a}: {e}" for a, e in self.errors.items())

    def _final(self, error: TritonizeError) -> TritonizeError:
        """The last error, or, when several endpoints failed retryably, one that names every one of them."""
        if len(self.errors) < 2 or not RetryPolicy.retryable(error.status):
            return error
        every_server_down = all(e.endpoint_down for e in self.errors.values())
        kind = ServerUnavailable if every_server_down else type(error)
        subject = f"model {self.model!r}" if self.model else "the call"
        final = kind(
            f"no server could answer {subject}: all {len(self.errors)} endpoints failed "
            f"({', '.join(self.errors)}){self._so_far()}",
            url=self.pool.url, model=self.model,
        )
        final.status = error.status
        final.endpoint_down = every_server_down
        return final


T = TypeVar("T")


class Channels(Generic[T]):
    """One gRPC client per endpoint, made on first use; those of addresses DNS dropped are closed later.

    A dropped address's channel is kept for ``grace`` seconds (calls may still
    be in flight on it), then handed back by :meth:`retired` for the client to
    close.
    """

    def __init__(self, pool: Endpoints, make: Callable[[str, Optional[str]], T], grace: float) -> None:
        self.pool, self.make, self.grace = pool, make, grace
        self._lock = threading.Lock()
        self._open: Dict[str, T] = {}
        self._dropped: List[Tuple[float, T]] = []

    def get(self, address: str) -> T:
        with self._lock:
            channel = self._open.get(address)
            if channel is None:
                channel = self._open[address] = self.make(address, self.pool.server_name(address))
            return channel

    def retired(self) -> List[T]:
        """Channels to close now: those of addresses the pool no longer has, past their grace."""
        current = set(self.pool.addresses)
        now = time.monotonic()
        with self._lock:
            for address in [a for a in self._open if a not in current]:
                self._dropped.append((now, self._open.pop(address)))
            due = [channel for since, channel in self._dropped if now - since >= self.grace]
            self._dropped = [(since, channel) for since, channel in self._dropped if now - since < self.grace]
            return due

    def close_all(self) -> List[T]:
        """Every channel, open or dropped, for the client to close; none is left."""
        with self._lock:
            everything = list(self._open.values()) + [channel for _, channel in self._dropped]
            self._open, self._dropped = {}, []
            return everything
