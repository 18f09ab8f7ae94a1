"""Run child programs in their own session and stop every process they started, by pid.

Ray daemons, DeepSpeed launchers and vLLM engines fork helpers of their own; stopping only the direct
child leaves those running. A child started here leads a new session, so its whole tree can be found
(``/proc/<pid>/stat``'s session field) and stopped: SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def session_pids(session: int, naming: str = "") -> list[int]:
    """Live processes of ``session`` (a session leader's pid), plus any whose command line names ``naming``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if fields is None or fields[0] == "Z":
            continue
        if int(fields[3]) == session or (naming and naming in _cmdline(pid)):
            found.append(pid)
    return found


def stop_pids(find: Callable[[], list[int]], grace: float = 10.0) -> None:
    """SIGTERM what ``find`` returns, SIGKILL what is still there after ``grace`` seconds."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        pids = find()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.2)
            pids = [pid for pid in pids if alive(pid)]
        if not pids:
            return


def run_logged(command: Sequence[str], log_path: Path, env: dict[str, str], grace: float = 10.0) -> int:
    """Run ``command`` in a new session, its output appended to ``log_path``; on any exception (Ctrl-C
    included) stop its whole session before re-raising. Returns the exit status."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            return process.wait()
        except BaseException:
            stop_pids(lambda: session_pids(process.pid), grace)
            process.wait()
            raise
        finally:
            # A finished child may leave daemons behind in its session (none of ours should outlive it).
            stop_pids(lambda: session_pids(process.pid), grace)
