"""The SDK application teams ship: light, sync and async alike, safe under failure."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading
import time
import venv

import pytest

from conftest import REPO_ROOT, tiny_classifier
from tritonize.client import (
    AccessDenied,
    AsyncClient,
    Client,
    Connection,
    DeadlineExceeded,
    RetryPolicy,
    ServerUnavailable,
    TritonizeError,
)
from tritonize.deploy import LocalServer, free_port

pytestmark = pytest.mark.server

TEXTS = [f"sentence number {i} " * (1 + i % 5) for i in range(23)]


def _ports():
    return {"http_port": free_port(), "grpc_port": free_port(), "metrics_port": free_port()}


def _dicts(results):
    return [[r.to_dict() for r in row] for row in results]


def test_base_install_is_light_and_works(served_classifiers, tmp_path):
    """pip install tritonize (no extras) in a fresh venv: no torch/transformers/onnx, and it calls a server."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(REPO_ROOT)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr[-2000:]
    script = (
        "import importlib.util, json, sys\n"
        "heavy = [m for m in ('torch', 'transformers', 'onnx', 'onnxruntime', 'optimum', 'tokenizers')"
        " if importlib.util.find_spec(m)]\n"
        "from tritonize.client import Client\n"
        f"with Client({served_classifiers.url!r}) as c:\n"
        "    r = c.classify('bert-single', ['light client', 'works'])\n"
        "print(json.dumps({'heavy': heavy, 'result': [[x.to_dict() for x in row] for row in r]}))\n"
    )
    # run outside the checkout, so that only the installed package can be imported
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    import json

    out = json.loads(run.stdout)
    assert out["heavy"] == []
    with Client(served_classifiers.url) as client:
        assert out["result"] == _dicts(client.classify("bert-single", ["light client", "works"]))


def test_async_client_matches_sync(served_classifiers, served_ner, served_qa):
    with Client(served_classifiers.url) as c1, Client(served_ner.url) as c2, Client(served_qa.url) as c3:
        want_cls = _dicts(c1.classify("bert-short", TEXTS))
        want_ner = _dicts(c2.extract_entities("ner-roberta", TEXTS[:5], aggregation_strategy="first"))
        want_qa = c3.answer("qa-albert", question="What number?", context=TEXTS[:6], top_k=2)

    async def run():
        async with AsyncClient(served_classifiers.url) as a1, AsyncClient(served_ner.url) as a2, \
                AsyncClient(served_qa.url) as a3:
            models = await a1.list_models()
            return (
                await a1.classify("bert-short", TEXTS),
                await a2.extract_entities("ner-roberta", TEXTS[:5], aggregation_strategy="first"),
                await a3.answer("qa-albert", question="What number?", context=TEXTS[:6], top_k=2),
                models,
                await a1.is_live(),
                await a1.is_ready("bert-short"),
            )

    cls, ner, qa, models, live, ready = asyncio.run(run())
    assert _dicts(cls) == want_cls
    assert _dicts(ner) == want_ner
    assert [[a.to_dict() for a in row] for row in qa] == [[a.to_dict() for a in row] for row in want_qa]
    names = {m.name: m for m in models}
    assert "bert-single_encoder" not in names and names["bert-single"].task == "text-classification"
    assert names["bert-single"].ready is True and names["bert-multi"].labels
    assert live and ready


def test_large_inputs_are_chunked_concurrently_in_order(served_classifiers):
    """bert-short has max_batch_size 4: 23 texts become 6 requests, 3 in flight, results in input order."""
    with Client(served_classifiers.url, max_in_flight=3) as client:
        together = client.classify("bert-short", TEXTS)
        alone = [client.classify("bert-short", t) for t in TEXTS]
    assert _dicts(together) == [[r.to_dict() for r in row] for row in alone]


def test_deadline(served_classifiers):
    with Client(served_classifiers.url) as client:
        client.model_info("bert-single")
        with pytest.raises(DeadlineExceeded, match="bert-single"):
            client.classify("bert-single", ["x " * 400] * 32, timeout=0.0005)


def test_retries_only_unavailable_and_give_up_with_the_url():
    url = f"127.0.0.1:{free_port()}"
    with Client(url, timeout=10, retry=RetryPolicy(attempts=3, initial_backoff=0.2, max_backoff=0.2)) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailable, match=url):
            client.classify("m", "x")
        assert time.monotonic() - started >= 0.0  # attempts are bounded: it returns
    with Client(url, timeout=10, retry=RetryPolicy(attempts=1)) as client:
        with pytest.raises(ServerUnavailable):
            client.classify("m", "x")


def test_a_server_restart_is_ridden_through(tmp_path):
    """50 threads share one Client with the default timeout (30 s) and RetryPolicy(); the server restarts.

    Every call is answered with its own text's result: the calls that arrive while the server is down
    are retried (UNAVAILABLE, then the models loading) until it is back, well within their deadline.
    """
    from tritonize.exporters.export import ExportOptions, export

    repository = tmp_path / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository),
           stream=io.StringIO())
    ports = _ports()
    texts = [f"restart test {i} " * (1 + i % 4) for i in range(8)]
    results, errors = [], []  # (text, result, started, finished); every exception, whatever its type
    stop = threading.Event()
    callers = 50

    with LocalServer(repository, **ports) as server:
        with Client(server.grpc_url) as client:
            expected = {t: [r.to_dict() for r in client.classify("m", t)] for t in texts}

        with Client(server.grpc_url) as shared:  # the defaults: what an application gets
            assert shared.timeout == 30.0 and shared.retry == RetryPolicy() and shared.retry.attempts is None

            def caller(index):
                i = index
                while not stop.is_set():
                    text = texts[i % len(texts)]
                    started = time.monotonic()
                    try:
                        got = [r.to_dict() for r in shared.classify("m", text)]
                        results.append((text, got, started, time.monotonic()))
                    except Exception as exc:  # every call returns or raises; none hangs
                        errors.append(exc)
                    i += 1
                    stop.wait(0.25)  # a few hundred calls in all

            threads = [threading.Thread(target=caller, args=(k,)) for k in range(callers)]
            for thread in threads:
                thread.start()
            time.sleep(1.0)
            before_restart = len(results)
            server.stop()
            down = time.monotonic()  # the server is gone: nothing answers until it is back
            time.sleep(1.0)
            starting = time.monotonic()  # no server from `down` to here
            server.start()  # the same ports
            up = time.monotonic()
            time.sleep(1.5)
            stop.set()
            for thread in threads:
                thread.join(timeout=60)
            assert not any(t.is_alive() for t in threads), "a call hung"

    assert all(isinstance(e, TritonizeError) for e in errors), errors  # any failure would be a clear one...
    # ...and with the default policy there is none
    assert len(errors) == 0, [(type(e).__name__, e.status, str(e)) for e in errors[:5]]
    assert len(results) > before_restart > 0
    assert 100 < len(results) < 2000
    # every caller had a call pending while the server was down, and it was answered once it was back
    ridden = [r for r in results if r[2] < up and r[3] > down]
    assert len(ridden) >= callers, f"only {len(ridden)} calls were pending during the restart"
    # none answered while no server ran (the new one answers before start() has seen it ready: not `up`)
    assert all(r[3] > starting for r in ridden)
    for text, got, _, _ in results:  # nobody got another call's result
        assert got == expected[text]


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
            "-days", "2", "-subj", "/CN=tritonize-test-ca")
    for name, cn in (("server", "localhost"), ("client", "tritonize-client")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={cn}")
        (d / f"{name}.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext")
    return d


@pytest.fixture(scope="module")
def secured_repository(tmp_path_factory):
    from tritonize.exporters.export import ExportOptions, export

    repository = tmp_path_factory.mktemp("secured") / "repo"
    export(ExportOptions(str(tiny_classifier("bert-single")), "text-classification", "m", repository),
           stream=io.StringIO())
    return repository


def test_mutual_tls_auth_header_and_compression(certificates, secured_repository):
    d = certificates
    args = (
        "--grpc-use-ssl-mutual=true", f"--grpc-server-cert={d / 'server.crt'}",
        f"--grpc-server-key={d / 'server.key'}", f"--grpc-root-cert={d / 'ca.crt'}",
        "--grpc-restricted-protocol=inference:x-api-key=s3cret",
    )
    with LocalServer(secured_repository, extra_args=args, **_ports()) as server:
        url = f"localhost:{server.grpc_port}"
        good = Connection(
            root_certificates=str(d / "ca.crt"), private_key=str(d / "client.key"),
            certificate_chain=str(d / "client.crt"), compression="gzip",
            # Triton checks a restricted protocol's header as triton-grpc-protocol-<key>
            headers={"triton-grpc-protocol-x-api-key": "s3cret"},
        )
        with Client(url, connection=good) as client:
            secured = client.classify("m", ["over mutual TLS", "compressed"])
            assert len(secured) == 2

        no_key = Connection(root_certificates=str(d / "ca.crt"), private_key=str(d / "client.key"),
                            certificate_chain=str(d / "client.crt"))
        with Client(url, connection=no_key) as client:
            with pytest.raises(AccessDenied, match="x-api-key"):
                client.classify("m", "no auth header")

        plain = Connection()
        with Client(url, connection=plain, retry=RetryPolicy(attempts=1), timeout=5) as client:
            with pytest.raises(TritonizeError):
                client.classify("m", "no TLS")

    with LocalServer(secured_repository, **_ports()) as plain_server:
        with Client(plain_server.grpc_url) as client:
            assert _dicts(client.classify("m", ["over mutual TLS", "compressed"])) == _dicts(secured)


def test_connection_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="compression"):
        Connection(compression="brotli")
    with pytest.raises(ValueError, match="both private_key and certificate_chain"):
        Connection(private_key=str(tmp_path / "k"))
    with pytest.raises(ValueError, match="does not exist"):
        Connection(root_certificates=str(tmp_path / "missing.crt"))


def test_mypy_strict_on_the_sdk(tmp_path):
    """`mypy --strict` passes on client/ (and the protocol it exposes), as installed."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target),
                    str(REPO_ROOT)], check=True, capture_output=True, timeout=600)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports", "--no-incremental",
         "-p", "tritonize.client"],
        capture_output=True, text=True, cwd=target, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert (target / "tritonize" / "client" / "py.typed").is_file()
