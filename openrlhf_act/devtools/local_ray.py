"""A private loopback Ray head with fake GPU resources, for OpenRLHF's trainers on a CPU-only machine.

OpenRLHF asks Ray for ``{"GPU": 1}`` per role (actor, reference, vLLM engine); a head started with
``--num-gpus`` grants them on a machine that has none. The head gets its own port and temporary folder,
so a Ray cluster the user already runs is never touched, and it is stopped by pid: every process of its
session or named after its folder gets SIGTERM, then SIGKILL after a grace period (Ray's gcs_server
ignores SIGTERM).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from openrlhf_act.devtools.processes import session_pids, stop_pids


class RayHeadError(RuntimeError):
    """The head did not come up; the message names its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRayHead:
    """``with LocalRayHead(log_path, env=...) as head:`` runs a head; ``head.address`` is its GCS address
    (give it to drivers as ``RAY_ADDRESS``). Stopped on exit, also after an exception or Ctrl-C."""

    def __init__(
        self, log_path: str | Path, *, num_gpus: int = 3, num_cpus: int = 4, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = Path(log_path)
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.env = env or {}
        self.address = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._temp_dir = ""

    def start(self) -> str:
        ray = shutil.which("ray", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        if ray is None:
            raise RayHeadError("the 'ray' command is not installed (pip install 'ray[default]')")
        # Ray's socket paths must stay short: a folder under /tmp, not under the run directory.
        self._temp_dir = tempfile.mkdtemp(prefix="oa-ray-", dir="/tmp")
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            ray, "start", "--head", "--block", f"--port={port}", f"--num-gpus={self.num_gpus}",
            f"--num-cpus={self.num_cpus}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={self._temp_dir}",
        ]  # fmt: skip
        # Ports with fixed defaults would collide with a Ray cluster the user already runs here.
        for option in ("ray-client-server-port", "dashboard-agent-listen-port", "dashboard-port"):
            command.append(f"--{option}={free_port()}")
        env = {**os.environ, **self.env}
        env.pop("RAY_ADDRESS", None)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
            )
        self.address = f"127.0.0.1:{port}"
        try:
            self._wait_until_up(ray, env)
        except BaseException:  # Ctrl-C included: nothing of a half-started head stays behind
            self.stop()
            raise
        return self.address

    def _wait_until_up(self, ray: str, env: dict[str, str], timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RayHeadError(f"the Ray head exited with status {self._process.returncode}; see {self.log_path}")
            try:  # one slow probe on a busy machine is not a failure: probe again until the deadline
                probe = subprocess.run(
                    [ray, "status", f"--address={self.address}"], env=env, capture_output=True, text=True, timeout=60
                )
            except subprocess.TimeoutExpired:
                continue
            if probe.returncode == 0 and "GPU" in probe.stdout:  # up, with its resources registered
                return
            time.sleep(1.0)
        raise RayHeadError(f"the Ray head did not answer within {timeout:.0f} s; see {self.log_path}")

    def pids(self) -> list[int]:
        """Every live process of this head: its session, and anything naming its temporary folder."""
        if self._process is None:
            return []
        return session_pids(self._process.pid, self._temp_dir)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process of the head, SIGKILL what is left after ``grace`` seconds."""
        if self._process is None:
            return
        stop_pids(self.pids, grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)
        shutil.rmtree(self._temp_dir, ignore_errors=True)
        self._process = None

    def __enter__(self) -> LocalRayHead:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
