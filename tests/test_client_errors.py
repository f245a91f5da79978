"""SDK errors name the model, the server and the cause."""

from __future__ import annotations

import pytest

from tritonize.client import (
    Client,
    InvalidInput,
    ModelNotFound,
    ServerUnavailable,
    TaskMismatch,
    TritonizeError,
)
from tritonize.deploy import free_port

pytestmark = pytest.mark.server


def test_unreachable_server_names_the_url():
    url = f"127.0.0.1:{free_port()}"
    with Client(url, timeout=5) as client:
        with pytest.raises(ServerUnavailable, match=url):
            client.classify("anything", "hello")
        assert client.is_live() is False


def test_missing_model(served_classifiers):
    with Client(served_classifiers.url) as client:
        with pytest.raises(ModelNotFound, match="'no-such-model'") as caught:
            client.classify("no-such-model", "hello")
    assert served_classifiers.url in str(caught.value)
    assert isinstance(caught.value, TritonizeError)


def test_a_step_is_not_a_classifier(served_classifiers):
    with Client(served_classifiers.url) as client:
        with pytest.raises(TaskMismatch, match="encoder step"):
            client.classify("bert-single_encoder", "hello")


@pytest.mark.parametrize("texts, top_k, message", [
    (["ok", 3], None, r"texts\[1\] must be a str"),
    ("ok", 0, "top_k must be a positive int"),
])
def test_bad_arguments(served_classifiers, texts, top_k, message):
    with Client(served_classifiers.url) as client:
        with pytest.raises(InvalidInput, match=message):
            client.classify("bert-single", texts, top_k=top_k)


def test_model_info_and_health(served_classifiers):
    with Client(served_classifiers.url) as client:
        assert client.is_live() and client.is_ready() and client.is_ready("bert-single")
        info = client.model_info("bert-single")
        assert info.task == "text-classification" and info.role == "ensemble"
        assert info.max_batch_size == 32
        assert client.classify("bert-single", []) == []
