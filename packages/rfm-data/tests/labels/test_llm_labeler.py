"""The LLM backend against a real OpenAI-compatible HTTP server on 127.0.0.1, started by the test.

The server answers chat-completions requests with the rule labeler's labels for the user message (so the
answers are real labels), after a scripted sequence of failures: HTTP errors, malformed JSON, labels that do
not fit the schema. It counts requests and the most requests it ever had in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rfm_data.labels import LabelStatus, create_labeler
from rfm_data.labels.llm import LlmConfig, LlmLabeler, parse_reply
from rfm_data.labels.observations import SchemaError

_RULE = create_labeler("rule")


@dataclass
class FakeLlm:
    """Server state: replies to give before real answers, and what was received."""

    script: list[tuple[int, str]] = field(default_factory=list)  # (HTTP status, message content) per request
    always: tuple[int, str] | None = None  # answer every request like this (e.g. always malformed)
    delay_s: float = 0.0
    requests: list[dict[str, object]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, body: dict[str, object]) -> tuple[int, str]:
        with self.lock:
            self.requests.append(body)
            if self.always is not None:
                return self.always
            if self.script:
                return self.script.pop(0)
        messages = body["messages"]
        assert isinstance(messages, list)
        labels = _RULE.label_batch([messages[-1]["content"]])[0].labels
        return 200, json.dumps(dict(labels))


def _handler(state: FakeLlm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with state.lock:
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            try:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                time.sleep(state.delay_s)
                status, content = state.answer(body)
            finally:
                # Leave the count before replying: once the client has the reply it may send its next
                # request, which must not find this one still counted.
                with state.lock:
                    state.in_flight -= 1
            reply = json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_llm() -> Iterator[FakeLlm]:
    state = FakeLlm()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _labeler(fake: FakeLlm, **kw: object) -> LlmLabeler:
    settings: dict[str, object] = {"url": fake.url, "model": "fake", "backoff_s": 0.01, "timeout_s": 10.0, **kw}
    labeler = create_labeler("llm", **settings)
    assert isinstance(labeler, LlmLabeler)
    return labeler


REPORTS = ["Mild cardiomegaly. No pleural effusion.", "Possible left lower lobe pneumonia.",
           "No acute cardiopulmonary abnormality."]


def test_labels_come_back_validated_and_the_request_is_openai_shaped(fake_llm: FakeLlm) -> None:
    results = _labeler(fake_llm).label_batch(REPORTS)
    assert [r.status for r in results] == [LabelStatus.OK] * 3
    assert results[0].labels == {"Cardiomegaly": 1, "Pleural Effusion": 0}
    assert results[1].labels == {"Pneumonia": -1}
    request = fake_llm.requests[0]
    assert request["model"] == "fake" and request["temperature"] == 0
    messages = request["messages"]
    assert isinstance(messages, list) and messages[0]["role"] == "system"
    assert "Support Devices" in messages[0]["content"]


def test_transient_errors_and_malformed_replies_are_retried(fake_llm: FakeLlm) -> None:
    fake_llm.script = [(503, "busy"), (200, "not json at all"), (200, '{"Cardiomegaly": 0.7}'),
                       (200, '{"Heart Big": 1}')]
    labeler = _labeler(fake_llm, retries=4, concurrency=1)
    (result,) = labeler.label_batch(["Mild cardiomegaly."])
    assert result.status is LabelStatus.OK and result.labels == {"Cardiomegaly": 1}
    assert labeler.requests_sent == 5 == len(fake_llm.requests)


def test_never_valid_reply_gives_backend_error_and_is_not_cached(fake_llm: FakeLlm) -> None:
    fake_llm.always = (200, "```json\n{broken")
    labeler = _labeler(fake_llm, retries=2)
    (result,) = labeler.label_batch(["Mild cardiomegaly."])
    assert result.status is LabelStatus.BACKEND_ERROR and result.labels == {}
    assert "3 tries failed" in result.detail
    assert len(fake_llm.requests) == 3
    fake_llm.always = None  # the endpoint recovers: the failure was not cached, so the report is sent again
    (again,) = labeler.label_batch(["Mild cardiomegaly."])
    assert again.labels == {"Cardiomegaly": 1} and len(fake_llm.requests) == 4


def test_client_errors_are_not_retried(fake_llm: FakeLlm) -> None:
    fake_llm.always = (400, "bad request")
    (result,) = _labeler(fake_llm, retries=3).label_batch(["Mild cardiomegaly."])
    assert result.status is LabelStatus.BACKEND_ERROR and len(fake_llm.requests) == 1


def test_unreachable_endpoint_gives_backend_error() -> None:
    labeler = LlmLabeler(LlmConfig(url="http://127.0.0.1:9/v1", retries=1, backoff_s=0.01, timeout_s=2.0))
    (result,) = labeler.label_batch(["Mild cardiomegaly."])
    assert result.status is LabelStatus.BACKEND_ERROR


def test_cache_by_report_hash_in_memory_and_on_disk(fake_llm: FakeLlm, tmp_path: Path) -> None:
    cache = str(tmp_path / "llm-cache")
    first = _labeler(fake_llm, cache_url=cache).label_batch([*REPORTS, REPORTS[0]])
    assert len(fake_llm.requests) == 3  # the repeated report is sent once
    assert first[0] == first[3]
    # a new labeler (a new process, a resumed run) finds every answer on disk and sends nothing
    second = _labeler(fake_llm, cache_url=cache).label_batch(REPORTS)
    assert len(fake_llm.requests) == 3 and second == first[:3]
    # another prompt is another fingerprint: the cache does not answer for it
    _labeler(fake_llm, cache_url=cache, prompt="Label this report as JSON: {observations}").label_batch(REPORTS[:1])
    assert len(fake_llm.requests) == 4


def test_concurrency_limit(fake_llm: FakeLlm) -> None:
    fake_llm.delay_s = 0.05
    texts = [f"Mild cardiomegaly, report {i}." for i in range(12)]
    results = _labeler(fake_llm, concurrency=3).label_batch(texts)
    assert all(r.labels == {"Cardiomegaly": 1} for r in results)
    assert 2 <= fake_llm.max_in_flight <= 3


def test_bad_input_never_reaches_the_endpoint(fake_llm: FakeLlm) -> None:
    results = _labeler(fake_llm, max_chars=1000).label_batch(
        [None, "", b"\xff\xfe", "Mild cardiomegaly. " + "x" * 200_000])
    assert [r.status for r in results] == [LabelStatus.EMPTY, LabelStatus.EMPTY, LabelStatus.INVALID_TEXT,
                                           LabelStatus.TRUNCATED]
    assert len(fake_llm.requests) == 1
    messages = fake_llm.requests[0]["messages"]
    assert isinstance(messages, list) and len(messages[-1]["content"]) == 1000


@pytest.mark.parametrize(
    "body",
    [b"", b"[]", b'{"choices": []}', b'{"choices": [{"message": {"content": 5}}]}',
     b'{"choices": [{"message": {"content": "[1, 0]"}}]}',
     b'{"choices": [{"message": {"content": "{\\"Edema\\": true}"}}]}'],
)
def test_parse_reply_rejects_what_does_not_fit(body: bytes) -> None:
    with pytest.raises(SchemaError):
        parse_reply(body)


def test_parse_reply_accepts_a_code_fence_and_nulls() -> None:
    content = '```json\n{"Edema": null, "Pneumothorax": -1}\n```'
    body = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
    assert parse_reply(body) == {"Pneumothorax": -1}
