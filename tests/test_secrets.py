"""No secret on disk: API keys, tokens, passwords and URL credentials never reach a manifest, run.json, a
cache, a log or an error message (``openrlhf_act.redaction``), and a rotated key still resumes a run."""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from openrlhf_act.cli import main
from openrlhf_act.errors import UsageError
from openrlhf_act.files import RUN_FILE, open_run_dir, write_json
from openrlhf_act.redaction import REDACTED, RedactingFilter, comparable, is_secret_key, redact, redact_text
from tests.test_build import write_trajectories

pytest.importorskip("openai")


def test_secret_keys_by_name_not_by_accident():
    secret = ["api_key", "apiKey", "X-Api-Key", "OPENAI_API_KEY", "hf_token", "token", "access_token", "accessToken"]
    secret += ["Authorization", "password", "db_passwd", "client_secret", "auth", "cookie", "private_key"]
    plain = ["max_tokens", "max_prompt_tokens", "prompt_tokens", "tokenizer", "eos_token", "pad_token_id"]
    plain += ["think_end_token", "input_key", "label_key", "key", "author", "base_url", "model"]
    assert [k for k in secret if not is_secret_key(k)] == []
    assert [k for k in plain if is_secret_key(k)] == []


def test_redaction_at_any_depth_and_in_text():
    settings = {
        "sampler_options": {
            "api_key": "sk-1",
            "base_url": "https://me:pw@host:8000/v1",
            "engine_kwargs": {"default_headers": {"Authorization": "Bearer sk-1"}},
            "max_tokens": 64,
            "api_key_unset": None,
        },
        "inputs": ["a.jsonl"],
    }
    shown = redact(settings)
    assert "sk-1" not in json.dumps(shown) and "pw" not in json.dumps(shown)
    assert shown["sampler_options"]["base_url"] == f"https://{REDACTED}@host:8000/v1"
    assert shown["sampler_options"]["max_tokens"] == 64 and shown["sampler_options"]["api_key_unset"] is None
    assert settings["sampler_options"]["api_key"] == "sk-1", "redact copies, the caller's settings stay usable"
    text = "401 for http://u:p@h/v1: {'error': 'bad api_key=sk-2', 'header': 'Authorization: Bearer sk-3'}"
    assert not any(s in redact_text(text) for s in ("u:p", "sk-2", "sk-3")) and "http://" in redact_text(text)
    assert redact_text("sent Authorization: Basic dTpw") == f"sent Authorization: Basic {REDACTED}"
    assert redact_text("plain text, 3 tokens: 5") == "plain text, 3 tokens: 5"
    rotated = {
        **settings["sampler_options"],
        "api_key": "sk-other",
        "base_url": "https://me:other@host:8000/v1",
        "engine_kwargs": {"default_headers": {"Authorization": "Bearer other"}},
    }
    assert comparable(shown) == comparable(redact({**settings, "sampler_options": rotated})), "secrets not compared"
    assert comparable(shown) != comparable(redact({**settings, "sampler_options": {**rotated, "max_tokens": 8}}))


def test_a_rotated_key_resumes_a_run_and_run_json_holds_none(tmp_path):
    out = tmp_path / "run"
    open_run_dir(out, {"policy": {"policy": "openai", "api_key": "sk-OLD", "model": "m"}, "seed": 0})
    assert "sk-OLD" not in (out / RUN_FILE).read_text()
    open_run_dir(out, {"policy": {"policy": "openai", "api_key": "sk-NEW", "model": "m"}, "seed": 0})
    open_run_dir(out, {"policy": {"policy": "openai", "model": "m"}, "seed": 0})  # the key now from the environment
    with pytest.raises(UsageError, match="different policy"):
        open_run_dir(out, {"policy": {"policy": "openai", "api_key": "sk-NEW", "model": "other"}, "seed": 0})
    write_json(tmp_path / "manifest.json", {"config": {"hf_token": "hf_x"}})
    assert "hf_x" not in (tmp_path / "manifest.json").read_text()


def test_log_lines_are_redacted(caplog):
    handler = logging.StreamHandler()
    handler.addFilter(RedactingFilter())
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "failed: %s", ("Bearer sk-9",), None)
    assert handler.filter(record) and record.getMessage() == f"failed: Bearer {REDACTED}"


# ---- end to end: a build, an export and an eval against a local OpenAI-compatible server -----------------


class FakeOpenAI(ThreadingHTTPServer):
    """``/v1/chat/completions`` answering "Action: look around"; records the Authorization headers; its
    first answer is a 400 that quotes the request's credentials back (as some servers' errors do)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.authorizations: list[str] = []
        self.requests = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        authorization = self.headers.get("Authorization", "")
        with self.server.lock:
            self.server.authorizations.append(authorization)
            self.server.requests += 1
            first = self.server.requests == 1
        if first:
            answer = {"error": {"message": f"bad request with Authorization: {authorization}", "type": "invalid"}}
            return self._send(400, answer)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": "Action: look around"}, "finish_reason": "stop"}
            for i in range(body.get("n") or 1)
        ]
        self._send(
            200, {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices}
        )

    def _send(self, status: int, answer: dict) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake_openai():
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _files_holding(root: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return found


def test_no_planted_secret_reaches_any_file_or_message(tmp_path, fake_openai, monkeypatch, capfd, caplog):
    """Planted: an API key in --sampler-option, a password in the endpoint's URL (the client then sends it as
    Basic auth, which the server's first answer quotes back), a key in $OPENAI_API_KEY."""
    key, password, env_key = (f"sk-PLANTED-{uuid.uuid4().hex}" for _ in range(3))
    basic = base64.b64encode(f"agent:{password}".encode()).decode()
    secrets = [key, password, env_key, basic]
    trajectories = write_trajectories(tmp_path / "traj.jsonl", tasks=4, steps=3)
    build = ["data", "build", "--input", str(trajectories), "--out", str(tmp_path / "act"), "--sampler", "openai"]
    build += ["--model", "served", "--base-url", f"http://agent:{password}@{fake_openai.url}", "--max-tokens", "16"]
    build += ["--sampler-option", f"api_key={key}", "--sampler-option", "max_retries=0", "--eval-ratio", "0.25"]
    assert main(build) == 0
    assert f"Basic {basic}" in fake_openai.authorizations, "the URL's credentials were used"
    asked = fake_openai.requests
    rotated = [a if a != f"api_key={key}" else "api_key=sk-PLANTED-rotated" for a in build]
    assert main(rotated) == 0 and fake_openai.requests == asked, "a rotated key reuses the sampling cache"
    build_dir = str(tmp_path / "act")
    export = ["data", "export", "--kind", "next_action", "--build", build_dir, "--out", str(tmp_path / "na")]
    assert main(export) == 0
    monkeypatch.setenv("OPENAI_API_KEY", env_key)
    evaluate = ["eval", "next-action", "--data", str(tmp_path / "na" / "eval.jsonl"), "--out", str(tmp_path / "ev")]
    evaluate += ["--policy", "openai", "--model", "served", "--policy-option", f"base_url=http://{fake_openai.url}"]
    evaluate += ["--no-progress"]
    assert main(evaluate) == 0
    assert f"Bearer {env_key}" in fake_openai.authorizations, "the key came from $OPENAI_API_KEY"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-PLANTED-rotated")
    assert main(evaluate) == 0, "a rotated key resumes the evaluation"
    manifest = json.loads((tmp_path / "act" / "manifest.json").read_text())
    assert manifest["config"]["sampler_options"]["api_key"] == REDACTED
    assert manifest["config"]["sampler_options"]["base_url"] == f"http://{REDACTED}@{fake_openai.url}"
    printed = capfd.readouterr()
    assert _files_holding(tmp_path, secrets) == []
    assert [s for s in secrets if s in printed.out + printed.err + caplog.text] == []
    assert "rejected state" in caplog.text + printed.err, "the 400 quoting the key was reported (redacted)"
