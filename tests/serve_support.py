"""A ``serve-reward`` subprocess for tests, stopped by pid (its forked workers too), and the
``start_server`` fixture (registered for every test module by ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 60.0


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry))
    return children


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One ``serve-reward`` subprocess; output goes to files so no pipe can fill up."""

    def __init__(self, tmp_path: Path, *args: str, env: dict[str, str] | None = None):
        self.out = tmp_path / f"serve-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "openrlhf_act", "serve-reward", *args],
                cwd=REPO,
                stdout=out,
                stderr=err,
                env={**os.environ, **(env or {})},
            )
        self.url = ""
        self.port = 0

    def wait_ready(self) -> Server:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.out.read_text().splitlines():
                if "--reward.remote_url " in line:
                    self.url = line.split("--reward.remote_url ", 1)[1].strip()
                    self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
                    health = self.get("/health")
                    assert health["status"] == "ok"
                    return self
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}: {self.err.read_text()}")
            time.sleep(0.05)
        pytest.fail(f"server did not start: {self.err.read_text()}")

    def get(self, path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as response:
            return json.loads(response.read())

    def post(
        self, body: bytes, path: str = "/get_reward", headers: dict | None = None, timeout: float = 10
    ) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM by pid; SIGKILL the server and its workers (by pid) if it does not exit."""
        if self.proc.poll() is not None:
            return
        children = child_pids(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def start_server(tmp_path):
    started: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None, ready: bool = True) -> Server:
        server = Server(tmp_path, *args, env=env)
        started.append(server)
        return server.wait_ready() if ready else server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
