"""`mlpack serve ...` as a user runs it: its own process, its stderr drained by a thread, stopped with
Ctrl-C (SIGINT) like a person would."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path


class Served:
    """`mlpack serve ...` in its own process group, its stderr drained by a thread."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, wait_s: float = 60) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "packager", "serve", *args, "--port", "0"],
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                     cwd=Path(__file__).resolve().parents[2])
        self.lines: list[str] = []
        self.url: str | None = None
        started = threading.Event()

        def drain() -> None:
            for line in self.proc.stderr:
                self.lines.append(line)
                if self.url is None and " at http://" in line and line.startswith("serving "):
                    self.url = line.split(" at ", 1)[1].split()[0]
                    started.set()
            started.set()

        threading.Thread(target=drain, daemon=True).start()
        started.wait(wait_s)
        assert self.url, "serve did not start:\n" + "".join(self.lines[-30:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        return self.proc.returncode
