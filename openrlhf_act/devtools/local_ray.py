"""A private loopback Ray head with fake GPU resources, for OpenRLHF's trainers on a CPU-only machine.

OpenRLHF asks Ray for ``{"GPU": 1}`` per role (actor, reference, vLLM engine); a head started with
``--num-gpus`` grants them on a machine that has none. The head gets its own port and temporary folder,
so a Ray cluster the user already runs is never touched, and it is stopped by pid: every process of its
session or named after its folder gets SIGTERM, then SIGKILL after a grace period (Ray's gcs_server
ignores SIGTERM). A head can outlive the process that started it (the recipes' ``openrlhf-act recipe
ray-head start``): its state file records what ``stop_recorded`` needs to find and stop it later.
"""

from __future__ import annotations

import contextlib
import json
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


class _HeadExited(RayHeadError):
    """The head's ``ray start`` ended while starting (worth one more try on a busy machine)."""


# Bounds that fit a loaded 2-core machine (a head starts in about 10 s on an idle one).
START_TIMEOUT_S = 300.0
START_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRayHead:
    """``with LocalRayHead(log_path, env=...) as head:`` runs a head; ``head.address`` is its GCS address
    (give it to drivers as ``RAY_ADDRESS``). Stopped on exit, also after an exception or Ctrl-C."""

    def __init__(
        self, log_path: str | Path, *, num_gpus: int = 3, num_cpus: int | None = 4, env: dict[str, str] | None = None
    ) -> None:
        self.log_path = Path(log_path)
        self.num_gpus = num_gpus
        self.num_cpus = num_cpus
        self.env = env or {}
        self.address = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._temp_dir = ""

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start the head and wait up to ``timeout`` seconds for it to answer; its GCS address.

        On a busy machine Ray's own start-up gives up early (its raylet must register within a fixed 30 s), so a
        head that exits while starting is started again, from scratch, while the bound allows."""
        ray = shutil.which("ray", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
        if ray is None:
            raise RayHeadError("the 'ray' command is not installed (pip install 'ray[default]')")
        deadline = time.monotonic() + timeout
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                return self._start_once(ray, deadline)
            except _HeadExited:
                if attempt == START_ATTEMPTS or deadline - time.monotonic() < 30:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self, ray: str, deadline: float) -> str:
        # Ray's socket paths must stay short: a folder under /tmp, not under the run directory.
        self._temp_dir = tempfile.mkdtemp(prefix="oa-ray-", dir="/tmp")
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [
            ray, "start", "--head", "--block", f"--port={port}", f"--num-gpus={self.num_gpus}",
            "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
            f"--temp-dir={self._temp_dir}",
        ]  # fmt: skip
        if self.num_cpus is not None:  # None: as many as Ray detects
            command.append(f"--num-cpus={self.num_cpus}")
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
            self._wait_until_up(ray, env, deadline)
        except BaseException:  # Ctrl-C included: nothing of a half-started head stays behind
            self.stop()
            raise
        return self.address

    def _wait_until_up(self, ray: str, env: dict[str, str], deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise _HeadExited(f"the Ray head exited with status {self._process.returncode}; see {self.log_path}")
            try:  # one slow probe on a busy machine is not a failure: probe again until the deadline
                probe = subprocess.run(
                    [ray, "status", f"--address={self.address}"], env=env, capture_output=True, text=True,
                    timeout=max(1.0, min(60.0, deadline - time.monotonic())),
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                continue
            if probe.returncode == 0 and "GPU" in probe.stdout:  # up, with its resources registered
                return
            time.sleep(1.0)
        raise RayHeadError(f"the Ray head did not answer in time; see {self.log_path}")

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

    def save_state(self, path: Path) -> None:
        """Record the head (its session leader and temporary folder) for ``stop_recorded``."""
        if self._process is None:
            raise RayHeadError("the Ray head is not running")
        state = {"pid": self._process.pid, "temp_dir": self._temp_dir, "address": self.address}
        path.write_text(json.dumps(state) + "\n")

    def __enter__(self) -> LocalRayHead:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_recorded(state_path: Path, grace: float = 10.0) -> None:
    """Stop a head that ``save_state`` recorded, by pid, and remove its temporary folder and the state file."""
    state = json.loads(state_path.read_text())
    pid, temp_dir = int(state["pid"]), str(state["temp_dir"])
    stop_pids(lambda: session_pids(pid, temp_dir), grace)
    shutil.rmtree(temp_dir, ignore_errors=True)
    state_path.unlink(missing_ok=True)
