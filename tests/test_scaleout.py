"""Scale-out on this machine: one SDK client over two real tritonservers serving one repository.

The SDK spreads calls over both, and when one is killed (SIGKILL to its whole
process group: the server and its stubs, as when a pod or a host goes away)
every call is still answered, by the survivor, with the answer a lone server
gives. Both down is one clear ``ServerUnavailable`` naming both; a server
restarted on the same port is used again after the cool-down. Per-server
counts come from each server's own metrics endpoint, not from the SDK.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import tiny_classifier
from tritonize.client import (
    AsyncClient,
    Client,
    Endpoints,
    RetryPolicy,
    ServerUnavailable,
    TritonizeError,
)
from tritonize.client.endpoints import parse_urls, resolve_addresses
from tritonize.deploy import LocalServer, free_port
from tritonize.loadtest.triton import read_metrics

MODEL = "m"
TEXTS = [f"scale out {i} " * (1 + i % 4) for i in range(8)]


def _dicts(rows):
    return [r.to_dict() for r in rows]


def _ports():
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def _answered_by(server) -> int:
    """The ensemble's successful inferences, as this server's metrics endpoint counts them."""
    return int(read_metrics(server.metrics_url).get(("nv_inference_request_success", MODEL), 0))


def _counts(servers):
    return [_answered_by(s) for s in servers]


def _settled(servers, total, since=None, timeout=10.0):
    """Each server's count since ``since`` (counts), once they add up to ``total``
    (a response can reach the client a moment before Triton updates its counter)."""
    since = since or [0] * len(servers)
    deadline = time.monotonic() + timeout
    while True:
        counts = [now - before for now, before in zip(_counts(servers), since)]
        if sum(counts) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.1)


def _kill(server) -> None:
    """What a lost pod or host looks like: SIGKILL to the server and its stubs, no goodbye."""
    os.killpg(server.pid, signal.SIGKILL)
    for _ in range(100):
        if not server.is_running():
            return
        time.sleep(0.05)


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    from tritonize.exporters.export import ExportOptions, export

    repository = tmp_path_factory.mktemp("scaleout") / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", MODEL, repository),
           stream=io.StringIO())
    return repository


@pytest.fixture(scope="module")
def expected(repository):
    """Every text's answer from one server alone: the oracle for the calls spread over two."""
    with LocalServer(repository, heal=False, **_ports()) as server, Client(server.grpc_url) as client:
        return {text: _dicts(client.classify(MODEL, text)) for text in TEXTS}


def _warm(server) -> None:
    """A server's first inferences of each batch shape are slow (0.5 s here, against 2 ms after): the
    fewest-in-flight pick rightly keeps away from a cold server. Warm it with concurrent calls too, so
    that both servers start even."""
    with Client(server.grpc_url) as client:
        for text in TEXTS:
            client.classify(MODEL, text)

        def caller(k):
            for i in range(6):
                client.classify(MODEL, TEXTS[(k + i) % len(TEXTS)])

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    made = len(TEXTS) + 8 * 6
    # until Triton has counted them all, so that a test's counts start after the warm-up
    assert _settled([server], made)[0] == made


@pytest.fixture
def servers(repository):
    """Two warm tritonservers on the same repository, on different ports; each counts from 0 (metrics)."""
    pair = [LocalServer(repository, heal=False, ready_timeout=120, **_ports()) for _ in range(2)]
    try:
        for server in pair:
            server.start()
            _warm(server)
        yield pair
    finally:
        for server in pair:
            server.stop()


# -- the url forms (no server) ----------------------------------------------------------------------------
def test_several_urls_and_a_dns_name_become_endpoints():
    assert Endpoints("h1:8001,h2:8001").addresses == ["h1:8001", "h2:8001"]
    assert Endpoints(["h1:8001", "h2:8001, h3:8001", "h1:8001"]).addresses == ["h1:8001", "h2:8001", "h3:8001"]
    assert Client(" h1:8001 ,h2:8001").url == "h1:8001,h2:8001"
    # a name is resolved with getaddrinfo into one endpoint per address; localhost is 127.0.0.1 here
    port = free_port()
    pool = Endpoints(f"dns:///localhost:{port}")
    assert pool.stale()
    pool.refresh()
    assert f"127.0.0.1:{port}" in pool.addresses and not pool.stale()
    assert set(pool.addresses) == set(resolve_addresses("localhost", port))
    assert parse_urls("dns://svc:9001")[0].port == 9001 and parse_urls("dns:///svc")[0].port == 8001
    # a name that resolves to nothing is tried as it is, so that the call says why
    unknown = Endpoints("dns:///no-such-host.invalid:8001")
    unknown.refresh()
    assert unknown.addresses == ["no-such-host.invalid:8001"]
    for bad, message in [("", "url must be a non-empty str"), ("h1:8001,,h2:8001", "empty item"),
                         ([], "url must be a non-empty str"), (["h1:8001", 3], "url must be a non-empty str"),
                         ("dns://8.8.8.8/svc:8001", "dns:///NAME:PORT"), ("dns:///svc:http", "port must be"),
                         ("dns:///:8001", "names no host")]:
        with pytest.raises(ValueError, match=message):
            Client(bad)
    with pytest.raises(ValueError, match="cooldown"):
        Endpoints("h1:8001", cooldown=-1)
    with pytest.raises(ValueError, match="failover must be a bool"):
        RetryPolicy(failover="yes")


@pytest.mark.server
def test_unresolvable_name_is_a_clear_server_unavailable():
    with Client("dns:///no-such-host.invalid:8001", timeout=5, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(ServerUnavailable, match="no-such-host.invalid:8001"):
            client.classify(MODEL, "hello")


# -- two real servers ---------------------------------------------------------------------------------------
@pytest.mark.server
def test_calls_are_spread_over_both_servers(servers, expected):
    a, b = servers
    since = _counts(servers)
    with Client(f"{a.grpc_url},{b.grpc_url}") as client:
        for i in range(20):
            text = TEXTS[i % len(TEXTS)]
            assert _dicts(client.classify(MODEL, text)) == expected[text]
    assert _settled(servers, 20, since) == [10, 10]  # round-robin, as each server itself counts

    async def run():
        async with AsyncClient([a.grpc_url, b.grpc_url]) as aclient:
            results = await asyncio.gather(*(aclient.classify(MODEL, TEXTS[i % len(TEXTS)]) for i in range(40)))
            ready = await aclient.is_ready(MODEL)
            return results, ready

    results, ready = asyncio.run(run())
    assert ready
    assert [_dicts(r) for r in results] == [expected[TEXTS[i % len(TEXTS)]] for i in range(40)]
    counts = _settled(servers, 60, since)
    # both took a share of the 40 concurrent calls (not an even one: the fewest-in-flight pick rightly sends
    # fewer to a server that stalls a moment on a batch shape it has not run yet)
    assert sum(counts) == 60 and min(counts) > 10, counts


@pytest.mark.server
def test_a_server_killed_mid_run_loses_no_call(servers, expected):
    """4 threads on one Client and 4 coroutines on one AsyncClient; one server is SIGKILLed mid-run.

    Every call is answered (or, at worst, gets a TritonizeError): none is lost, none hangs, nobody gets
    another call's answer. In practice the survivor answers every one.
    """
    a, b = servers
    urls = [a.grpc_url, b.grpc_url]
    since = _counts(servers)
    per_caller, sync_callers, async_callers = 50, 4, 4
    made = sync_callers * per_caller + async_callers * per_caller
    answered, errors, other = [], [], []  # (text, result, finished at); TritonizeErrors; anything else
    lock = threading.Lock()

    def record(text, call):
        try:
            got = _dicts(call())
        except TritonizeError as exc:
            with lock:
                errors.append(exc)
            return
        except BaseException as exc:  # noqa: BLE001 - counted, and the test fails on it
            with lock:
                other.append(exc)
            return
        with lock:
            answered.append((text, got, time.monotonic()))

    client = Client(urls, timeout=10)

    def sync_caller(k):
        for i in range(per_caller):
            text = TEXTS[(k + i) % len(TEXTS)]
            record(text, lambda: client.classify(MODEL, text))

    def async_callers_thread():
        async def run():
            async with AsyncClient(urls, timeout=10) as aclient:
                async def caller(k):
                    for i in range(per_caller):
                        text = TEXTS[(k + i) % len(TEXTS)]
                        try:
                            got = _dicts(await aclient.classify(MODEL, text))
                        except TritonizeError as exc:
                            errors.append(exc)
                            continue
                        except Exception as exc:  # noqa: BLE001
                            other.append(exc)
                            continue
                        with lock:
                            answered.append((text, got, time.monotonic()))
                await asyncio.gather(*(caller(k) for k in range(async_callers)))
        asyncio.run(run())

    threads = [threading.Thread(target=sync_caller, args=(k,)) for k in range(sync_callers)]
    threads.append(threading.Thread(target=async_callers_thread))
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30

    def b_serving():  # B answered some of this run's calls (a cold server may stall a moment at first)
        return any(st.address == b.grpc_url and st.answered >= 5 for st in client.endpoints.status())

    while (len(answered) + len(errors) < made // 3 or not b_serving()) and time.monotonic() < deadline:
        time.sleep(0.01)
    b_before, a_at_kill = _answered_by(b) - since[1], _answered_by(a)
    before_kill = len(answered)
    _kill(b)
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a call hung"
    status = {s.address: s for s in client.endpoints.status()}
    client.close()

    print(f"\nkill test: {made} calls made, {len(answered)} answered, {len(errors)} clear errors, "
          f"{len(other)} other; {before_kill} answered before the kill; server B had answered {b_before}")
    assert other == [], other
    assert len(answered) + len(errors) == made  # none lost
    assert errors == [], [str(e) for e in errors[:3]]  # ...and in practice the survivor answered all
    for text, got, _ in answered:
        assert got == expected[text]  # nobody got another call's answer
    assert 0 < before_kill < made and b_before > 0  # B was serving when it was killed
    assert _answered_by(a) > a_at_kill  # ...and A took over
    assert not status[b.grpc_url].healthy and status[b.grpc_url].failed > 0  # set aside, for its cool-down
    assert status[a.grpc_url].healthy

    # both down: one clear error that names both servers, at once with attempts=1, else at the deadline
    _kill(a)
    for policy, timeout, within in ((RetryPolicy(attempts=1), 10.0, 2.0), (RetryPolicy(), 1.5, 4.0)):
        with Client(urls, timeout=timeout, retry=policy) as down:
            started = time.monotonic()
            with pytest.raises(ServerUnavailable) as caught:
                down.classify(MODEL, "anyone there?")
            assert time.monotonic() - started < within
        message = str(caught.value)
        assert "no server could answer model 'm': all 2 endpoints failed" in message, message
        assert a.grpc_url in message and b.grpc_url in message
        assert caught.value.endpoint_down

    async def both_down():
        async with AsyncClient(urls, timeout=5, retry=RetryPolicy(attempts=1)) as aclient:
            with pytest.raises(ServerUnavailable, match="all 2 endpoints failed"):
                await aclient.classify(MODEL, "anyone there?")
            assert not await aclient.is_live()

    asyncio.run(both_down())


@pytest.mark.server
def test_a_restarted_server_is_used_again_after_the_cooldown(servers, expected):
    a, b = servers
    pool = Endpoints([a.grpc_url, b.grpc_url], cooldown=2.0)
    with Client(pool, timeout=10) as client:
        assert _dicts(client.classify(MODEL, TEXTS[0])) == expected[TEXTS[0]]
        _kill(b)
        for text in TEXTS:  # all answered: by a, once b's failure set it aside
            assert _dicts(client.classify(MODEL, text)) == expected[text]
        assert [s.healthy for s in pool.status()] == [True, False]
        b.stop()
        b.start()  # the same ports; a fresh process, whose counters start at 0
        time.sleep(pool.cooldown)
        for i in range(10):
            text = TEXTS[i % len(TEXTS)]
            assert _dicts(client.classify(MODEL, text)) == expected[text]
        assert [s.healthy for s in pool.status()] == [True, True]
    assert _settled([b], 4)[0] >= 4  # b took its share again


@pytest.mark.server
def test_a_name_whose_addresses_change_is_looked_up_again(servers, expected):
    """Service discovery through ``Endpoints(lookup=...)``: at first one address, then two (a scale-up)."""
    a, b = servers
    answers = {"svc": [a.grpc_url]}
    looked_up = []

    def lookup(host, port):
        looked_up.append((host, port))
        return list(answers[host])

    pool = Endpoints("dns:///svc:8001", resolve_every=0.5, lookup=lookup)
    since = _counts(servers)

    async def run():
        async with AsyncClient(pool, timeout=10) as aclient:
            first = [await aclient.classify(MODEL, t) for t in TEXTS]
            answers["svc"] = [a.grpc_url, b.grpc_url]
            await asyncio.sleep(0.6)
            second = [await aclient.classify(MODEL, t) for t in TEXTS]
            return first, second

    first, second = asyncio.run(run())
    assert looked_up[0] == ("svc", 8001) and len(looked_up) >= 2
    assert [_dicts(r) for r in first + second] == [expected[t] for t in TEXTS + TEXTS]
    assert pool.addresses == [a.grpc_url, b.grpc_url]
    assert _settled(servers, 16, since) == [12, 4]  # all of the first 8 on a, then round-robin


@pytest.mark.server
def test_a_load_test_over_both_servers_counts_what_both_count(servers, tmp_path):
    """`tritonize loadtest --host A,B`: Locust users spread over both; its successes = the sum of both
    servers' own counts (read here, before and after), and Triton's view adds both up too."""
    a, b = servers
    (tmp_path / "sla.yaml").write_text("Aggregated:\n  max_fail_ratio: 0\n")
    since = _counts(servers)
    result = subprocess.run(
        [sys.executable, "-m", "tritonize.cli", "loadtest", "--host", f"{a.grpc_url},{b.grpc_url}",
         "--metrics-url", f"{a.metrics_url},{b.metrics_url}", "--models", MODEL, "--users", "4",
         "--spawn-rate", "4", "--run-time", "4s", "--think-time", "0.02-0.05", "--sla", str(tmp_path / "sla.yaml"),
         "--csv", str(tmp_path / "reports")],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with (tmp_path / "reports" / "locust_stats.csv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle) if r["Name"] == f"text-classification:{MODEL}")
    locust_success = int(row["Request Count"]) - int(row["Failure Count"])
    counts = _settled(servers, locust_success, since)
    assert int(row["Failure Count"]) == 0 and locust_success > 20
    assert sum(counts) == locust_success and min(counts) > 0, (counts, locust_success)
    assert "cannot read" not in result.stderr, result.stderr  # Triton's view of both servers was read
    assert re.search(r"^total\s+(\d+)\s+\1\s+equal$", result.stdout, re.M), result.stdout  # Triton's sum
