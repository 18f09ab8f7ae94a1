"""The reward service under broken and hostile clients: timeouts, bounded connections and memory, scoring
off the event loop, shutdown within its bound, workers that never outlive their parent, quiet logs, and a
start-up message that works when followed. Every server is a real subprocess stopped by pid."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.serve_support import Server, alive, child_pids, free_port

LABEL = json.dumps({"answer": 1, "candidates": ["open door", "go north"], "expert": "open door"})
PROMPT = "<|im_start|>user\nWhich action is better?<|im_end|>\n<|im_start|>assistant\n"


def _request_head(length: int) -> bytes:
    return (
        f"POST /get_reward HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _connect(server: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing, or ``None`` if the connection is still open after ``within``."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_slow_headers_slow_bodies_and_idle_connections_are_closed(start_server):
    server = start_server("--port", "0", "--header-timeout", "0.5", "--body-timeout", "0.5", "--keepalive-timeout", "1")
    half_header = _connect(server)
    half_header.sendall(b"POST /get_reward HTTP/1.1\r\nHost: x\r\n")
    half_body = _connect(server)
    half_body.sendall(_request_head(1000) + b'{"query": [')
    idle = _connect(server)
    assert _closed_by_server(half_header, within=5) == b""
    answer = _closed_by_server(half_body, within=5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408") and b"--body-timeout" in answer
    assert _closed_by_server(idle, within=5) == b""
    assert server.get("/health")["counters"]["timeouts"] == 1


def test_connections_beyond_the_bound_get_503_and_one_log_line(start_server):
    server = start_server("--port", "0", "--max-connections", "3", "--keepalive-timeout", "60")
    held = [_connect(server) for _ in range(3)]
    try:
        time.sleep(0.2)
        refused = [_connect(server) for _ in range(5)]
        for sock in refused:
            answer = _closed_by_server(sock, within=5)
            assert answer is not None and answer.startswith(b"HTTP/1.1 503"), answer
        assert server.err.read_text().count("connection limit reached") == 1
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while True:  # the held connections are gone: the service answers again
        with contextlib.suppress(OSError):
            if server.get("/health")["connections"]["refused"] == 5:
                break
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_bodies_in_flight_are_bounded_in_total(start_server):
    """Two clients each announce 1 MB and send it slowly: the 2 MB budget is taken, a third gets 503 at
    once; when one of them is done, requests are served again."""
    server = start_server("--port", "0", "--max-request-mb", "1", "--max-buffer-mb", "2", "--body-timeout", "30")
    slow = []
    for _ in range(2):
        sock = _connect(server)
        sock.sendall(_request_head(2**20) + b'{"query": ["')
        slow.append(sock)
    time.sleep(0.3)
    status, answer = server.post(json.dumps({"query": [PROMPT + "<answer>Action 1</answer>"]}).encode())
    assert status == 503 and "--max-buffer-mb" in answer["error"]
    slow[0].sendall(("x" * (2**20 - len(b'{"query": ["') - 3) + '"]}').encode())
    assert slow[0].recv(12) == b"HTTP/1.1 200"  # its whole body arrived: its share of the budget is back
    status, _ = server.post(json.dumps({"query": [PROMPT + "<answer>Action 1</answer>"]}).encode())
    assert status == 200
    for sock in slow:
        sock.close()


def test_a_big_batch_does_not_starve_health(start_server):
    """A 100,000-sample batch (seconds of scoring) is scored off the event loop: /health answers meanwhile."""
    server = start_server("--port", "0", "--max-request-mb", "64")
    n = 100_000
    body = json.dumps({"query": [PROMPT + "<answer>Action 1</answer><|im_end|>"] * n, "prompts": [PROMPT] * n,
                       "labels": [LABEL] * n}).encode()  # fmt: skip
    result = {}
    thread = threading.Thread(target=lambda: result.update(answer=server.post(body, timeout=300)))
    thread.start()
    answered_meanwhile = 0
    while thread.is_alive():
        server.get("/health")
        answered_meanwhile += thread.is_alive()
        time.sleep(0.05)
    thread.join()
    status, answer = result["answer"]
    assert status == 200 and len(answer["rewards"]) == n and set(answer["rewards"]) == {1.0}
    assert answered_meanwhile >= 3


def test_a_million_broken_labels_log_one_line_and_a_count(start_server):
    server = start_server("--port", "0", "--max-request-mb", "64")
    n = 200_000
    body = json.dumps({"query": ["q"] * n, "prompts": [""] * n, "labels": ["{broken"] * n}).encode()
    status, answer = server.post(body, timeout=300)
    assert status == 200 and set(answer["extra_logs"]["label_error"]) == {1.0}
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    err = server.err.read_text()
    assert err.count("unusable label") == 2, err[-3000:]  # the first one, then the summary at exit
    assert f"{n - 1} more like this" in err
    assert len(err) < 20_000


def test_a_client_leaving_mid_request_is_one_short_line(start_server):
    server = start_server("--port", "0")
    for _ in range(3):
        sock = _connect(server)
        sock.sendall(_request_head(5000) + b'{"query": ["abc')
        time.sleep(0.1)
        sock.close()
    deadline = time.monotonic() + 5
    while server.get("/health")["counters"]["disconnects"] < 3:
        assert time.monotonic() < deadline, server.err.read_text()
        time.sleep(0.05)
    err = server.err.read_text()
    assert "Traceback" not in err
    assert err.count("disconnected while sending its request") == 3


def test_sigterm_with_a_half_sent_request_exits_within_the_grace(start_server):
    server = start_server("--port", "0", "--shutdown-grace", "1")
    sock = _connect(server)
    sock.sendall(_request_head(5000) + b'{"query": [')
    time.sleep(0.2)
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0
    took = time.monotonic() - start
    assert took < 1 + 1 + 4, took  # the grace, aiohttp's close (1 s), process exit; once 60 s
    assert "cut off after the shutdown grace" in server.err.read_text()
    sock.close()


def test_workers_die_with_their_parent_and_free_the_port(start_server):
    port = free_port()
    server = start_server("--port", str(port), "--workers", "2")
    workers = child_pids(server.proc.pid)
    assert len(workers) == 2
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    deadline = time.monotonic() + 20
    while any(alive(pid) for pid in workers):
        assert time.monotonic() < deadline, "workers outlived their parent"
        time.sleep(0.05)
    restarted = start_server("--port", str(port))  # the port is free again: a restart binds it
    assert restarted.get("/health")["status"] == "ok"


def test_startup_message_warns_when_exposed_without_a_token(start_server):
    server = start_server("--port", "0", "--host", "0.0.0.0", ready=False)
    deadline = time.monotonic() + 60
    while "--reward.remote_url" not in server.out.read_text():
        assert server.proc.poll() is None and time.monotonic() < deadline, server.err.read_text()
        time.sleep(0.05)
    out = server.out.read_text()
    assert "WARNING: no --token" in out and "0.0.0.0:" not in out.split("--reward.remote_url", 1)[1]
    assert f"http://{socket.gethostname()}:" in out


@pytest.mark.parametrize("token", [None, "tok-1"])
def test_loopback_message_has_no_warning(start_server, token):
    server = start_server("--port", "0", env={"OPENRLHF_ACT_SERVE_TOKEN": token} if token else None)
    out = server.out.read_text()
    assert "WARNING" not in out and "reachable from other machines" not in out
    assert ("act:<token>@" in server.url) == bool(token)


def test_the_open_file_limit_is_raised_to_fit_the_connection_bound():
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from openrlhf_act.server import raise_fd_limit\n"
        "raise_fd_limit(1024)\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    soft, hard = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(soft) == min(1024 + 128, int(hard) if int(hard) >= 0 else 1024 + 128)
