#!/usr/bin/env python3
"""Load on `mlpack serve`: 50 locust clients for 60 s against the iris model, counting failed requests
(connection resets included) and watching the memory of the serving processes.

    bench/bench_load.py [--quick] [--json]

`mlpack serve` (the local API Gateway front, the runtime API and AWS's runtime client running the handler)
serves an exported iris model; locust (a load tool no one here wrote, headless) sends POST /predict with
one to eight rows from 50 users without pause. The RSS of the serve process and all its children is
sampled every second; "flat" compares the mean of the last tenth of the run with the mean of the tenth
after the warm-up (the first 10 %). Nothing here is a test. Quick: 15 s.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, Row, at_most, cli, parser

USERS = 50

LOCUSTFILE = '''
import random
from locust import FastHttpUser, task

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [6.3, 2.5, 5.0, 1.9]]


class Client(FastHttpUser):
    @task
    def predict(self):
        n = random.randint(1, 8)
        with self.client.post("/predict", json={"inputs": [random.choice(ROWS) for _ in range(n)]},
                              catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
'''


def _tree_rss_kb(pid: int) -> int:
    """RSS of a process and its descendants, from /proc."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def run(quick: bool) -> list[Row]:
    sys.path.insert(0, str(ROOT))
    from tests.support import handler_models as hm
    from tests.support.serving import Served

    seconds = 15 if quick else 60
    with tempfile.TemporaryDirectory(prefix="mlpack-bench-load-") as tmp:
        work = Path(tmp)
        folder, _, _ = hm.iris(work / "iris")
        (work / "locustfile.py").write_text(LOCUSTFILE)
        served = Served([str(folder)], wait_s=120)
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append(_tree_rss_kb(served.proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        try:
            sampler.start()
            locust = Path(sys.executable).parent / "locust"
            proc = subprocess.run(
                [str(locust), "-f", str(work / "locustfile.py"), "--headless", "-u", str(USERS), "-r", str(USERS),
                 "-t", f"{seconds}s", "--host", str(served.url), "--json", "--only-summary", "--loglevel", "ERROR"],
                capture_output=True, text=True, timeout=seconds + 120, cwd=work)
        finally:
            stop.set()
            sampler.join()
            served.stop()
    stats = json.loads(proc.stdout)
    total = next(s for s in stats if s["name"] == "/predict")
    requests, failures = int(total["num_requests"]), int(total["num_failures"])
    errors = sorted({str(e) for s in stats for e in (s.get("errors") or {})})[:3]
    tenth = max(1, len(samples) // 10)
    early = sum(samples[tenth:2 * tenth]) / tenth / 1024
    late = sum(samples[-tenth:]) / tenth / 1024
    growth = (late - early) / early * 100
    rps = requests / seconds
    failed_target, failed_met = at_most(failures, 0)
    flat_target, flat_met = at_most(round(growth, 1), 10, " %")
    note = f"{requests:,} requests in {seconds} s ({rps:.0f}/s) from {USERS} locust users on 2 cores"
    return [
        Row("load", f"{USERS} clients for {seconds} s on mlpack serve (iris): failed requests", failures, "requests",
            failed_target, failed_met, note + (f"; {'; '.join(errors)}" if errors else "; no resets or errors")),
        Row("load", f"{USERS} clients for {seconds} s on mlpack serve (iris): memory of the serving processes, "
            "end vs after warm-up", round(growth, 1), "%", flat_target + " (flat)", flat_met,
            f"{early:.0f} MB -> {late:.0f} MB (RSS of serve and its children, sampled each second); "
            f"single run"),
    ]


def main() -> None:
    cli(parser(__doc__), run)


if __name__ == "__main__":
    main()
