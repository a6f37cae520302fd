"""The LLM backend: an OpenAI-compatible chat-completions endpoint, standard library only.

Each report is sent once (``POST {url}/chat/completions``, system prompt + report text, temperature 0,
``response_format = json_object``); the reply must be a JSON object mapping observation names to
1 / 0 / -1 / null, checked with :func:`~rfm_data.labels.observations.validate_labels`. Bad replies
(not JSON, unknown observation, value 0.7, no ``choices``) and transient HTTP failures (connection errors,
timeouts, 408 / 429 / 5xx) are retried with exponential backoff; after the last try the report gets
``backend_error`` instead of stopping the batch. Requests run in a thread pool of ``concurrency``
workers. Results are cached by sha256(fingerprint + text), in memory and, with ``cache_url``, one small
JSON file per report on any fsspec URL, so a killed run resumes and a rerun sends nothing.
The API key is read from the environment variable named by ``api_key_env`` and never written anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from rfm_data import io
from rfm_data.labels.base import MAX_CHARS, check_text, labelers, truncated
from rfm_data.labels.observations import OBSERVATIONS, LabelResult, LabelStatus, SchemaError, validate_labels

DEFAULT_PROMPT = (
    "You label chest radiograph reports. For each observation below answer 1 if the report states it is "
    "present, 0 if the report states it is absent, -1 if the report is uncertain about it (possible, cannot "
    "be excluded, versus), and null if the report does not mention it. 'No Finding' is 1 only when the "
    "report describes no abnormality. Answer with one JSON object whose keys are exactly these observation "
    "names and nothing else: {observations}"
)
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class _RetryableError(Exception):
    """A failure worth another try (transient HTTP error or a reply that does not fit the schema)."""


@dataclass
class LlmConfig:
    """Settings of the LLM backend.

    Attributes:
        url: base URL of the OpenAI-compatible API (``.../v1``); ``/chat/completions`` is appended.
        model: model name sent with each request.
        prompt: system prompt; ``{observations}`` is replaced by the JSON list of observation names.
        api_key_env: environment variable holding the bearer token (unset: no Authorization header).
        timeout_s: per-request timeout.
        retries: extra tries after the first one, for transient errors and invalid replies.
        backoff_s: first wait between tries; doubles on every retry.
        concurrency: requests in flight at most.
        cache_url: folder (any fsspec URL) for the persistent cache; ``None``: in memory only.
        max_chars: longer reports are cut to this many characters (status ``truncated``).
    """

    url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    prompt: str = DEFAULT_PROMPT
    api_key_env: str = "RFM_LLM_API_KEY"
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0
    concurrency: int = 4
    cache_url: str | None = None
    max_chars: int = MAX_CHARS


def parse_reply(body: bytes) -> dict[str, int]:
    """Labels from a chat-completions response body; :class:`SchemaError` when it does not fit.

    The message content must be one JSON object (a Markdown code fence around it is tolerated, as chat
    models add one despite instructions); every key must be an observation, every value 1 / 0 / -1 / null.
    """
    try:
        content = json.loads(body)["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise SchemaError(f"not a chat-completions response ({type(err).__name__})") from err
    if not isinstance(content, str):
        raise SchemaError("the message content is not text")
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    try:
        labels = json.loads(text)
    except ValueError as err:
        raise SchemaError("the message content is not JSON") from err
    return validate_labels(labels)


class LlmLabeler:
    """Labels reports through an OpenAI-compatible endpoint (see the module docstring)."""

    name = "llm"

    def __init__(self, config: LlmConfig | None = None) -> None:
        self.config = config or LlmConfig()
        self._memory: dict[str, LabelResult] = {}
        self.requests_sent = 0  # HTTP requests made, retries included (for tests and logs)
        self._count_lock = threading.Lock()

    def fingerprint(self) -> str:
        prompt = hashlib.sha256(self.config.prompt.encode()).hexdigest()[:16]
        return f"llm/{self.config.model}/prompt-{prompt}/max{self.config.max_chars}"

    def _system_prompt(self) -> str:
        return self.config.prompt.replace("{observations}", json.dumps(list(OBSERVATIONS)))

    def _request(self, text: str) -> urllib.request.Request:
        payload = {"model": self.config.model, "temperature": 0, "response_format": {"type": "json_object"},
                   "messages": [{"role": "system", "content": self._system_prompt()},
                                {"role": "user", "content": text}]}
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.config.url.rstrip("/") + "/chat/completions"
        return urllib.request.Request(url, json.dumps(payload).encode(), headers, method="POST")

    def _once(self, text: str) -> dict[str, int]:
        with self._count_lock:
            self.requests_sent += 1
        try:
            with urllib.request.urlopen(self._request(text), timeout=self.config.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as err:
            if err.code in _RETRY_STATUS:
                raise _RetryableError(f"HTTP {err.code}") from err
            raise
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise _RetryableError(type(err).__name__) from err
        try:
            return parse_reply(body)
        except SchemaError as err:
            raise _RetryableError(f"invalid reply: {err}") from err

    def _label_one(self, text: str) -> LabelResult:
        last = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff_s * 2 ** (attempt - 1))
            try:
                return LabelResult(self._once(text))
            except _RetryableError as err:
                last = str(err)
            except (urllib.error.HTTPError, ValueError) as err:
                return LabelResult({}, LabelStatus.BACKEND_ERROR, f"not retried: {str(err)[:200]}")
        return LabelResult({}, LabelStatus.BACKEND_ERROR, f"{self.config.retries + 1} tries failed; last: {last[:200]}")

    def _key(self, text: str) -> str:
        return hashlib.sha256(f"{self.fingerprint()}\n{text}".encode("utf-8", "surrogatepass")).hexdigest()

    def _cached(self, key: str) -> LabelResult | None:
        if key in self._memory or self.config.cache_url is None:
            return self._memory.get(key)
        url = io.join(self.config.cache_url, key[:2], f"{key}.json")
        if not io.exists(url):
            return None
        record = json.loads(io.read_text(url))
        result = LabelResult(validate_labels(record["labels"]), LabelStatus(record["status"]), record.get("detail", ""))
        self._memory[key] = result
        return result

    def _store(self, key: str, result: LabelResult) -> None:
        if result.status is LabelStatus.BACKEND_ERROR:
            return  # never cache a failure: the next run tries again
        self._memory[key] = result
        if self.config.cache_url is not None:
            record = {"labels": dict(result.labels), "status": result.status.value, "detail": result.detail}
            io.write_text(io.join(self.config.cache_url, key[:2], f"{key}.json"), json.dumps(record, sort_keys=True))

    def label_batch(self, texts: Sequence[str | bytes | None]) -> list[LabelResult]:
        """Label each text; cached texts are not sent again, identical texts are sent once."""
        checked = [check_text(raw, self.config.max_chars) for raw in texts]
        keys = [self._key(text) if bad is None else "" for text, bad in checked]
        todo = {key: text for key, (text, bad) in zip(keys, checked, strict=True)
                if bad is None and self._cached(key) is None}
        fresh: dict[str, LabelResult] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.config.concurrency)) as pool:
            for key, result in zip(todo, pool.map(self._label_one, todo.values()), strict=True):
                self._store(key, result)
                fresh[key] = result
        out = []
        for raw, key, (_, bad) in zip(texts, keys, checked, strict=True):
            result = bad if bad is not None else fresh.get(key) or self._memory[key]
            out.append(truncated(result, raw, self.config.max_chars))
        return out


@labelers.register("llm")
def llm_labeler(**settings: object) -> LlmLabeler:
    """The LLM backend; keyword arguments are :class:`LlmConfig` fields (``url``, ``model``, ``prompt``...)."""
    return LlmLabeler(LlmConfig(**settings))  # type: ignore[arg-type]
