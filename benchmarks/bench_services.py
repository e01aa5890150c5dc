"""Cold and warm start times of the embedded servers, measured in fresh processes.

Usage: .venv/bin/python benchmarks/bench_services.py [--runs 3]
Cold: a new TWIN_HOME (initdb + first start + migrations). Warm: servers already running, a new
process finds and checks them. Restart: stopped servers, data present.
"""

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from twin_platform.servers.process import free_port

PROBE = "from twin_platform import servers; from twin_platform.settings import load_settings; servers.postgres_uri(load_settings()); servers.mongodb_uri(load_settings())"


def timed(env: dict[str, str], code: str = PROBE) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    baseline = timed(os.environ.copy(), "import twin_platform.servers")
    rows: dict[str, list[float]] = {"cold": [], "warm": [], "restart": []}
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "TWIN_HOME": home, "TWIN_MONGO_PORT": str(free_port())}
            env.pop("DATABASE_URL", None)
            env.pop("MONGODB_URI", None)
            rows["cold"].append(timed(env))
            rows["warm"].append(timed(env))
            timed(
                env,
                "from twin_platform import servers; from twin_platform.settings import load_settings; servers.down(load_settings())",
            )
            rows["restart"].append(timed(env))
            timed(
                env,
                "from twin_platform import servers; from twin_platform.settings import load_settings; servers.down(load_settings())",
            )
    print(f"machine: {platform.node()} {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"command: {' '.join(sys.argv)}")
    print(f"process start + imports alone: {baseline:.2f} s (included in every figure below)")
    print("| start | median s | min s | max s |\n|---|---|---|---|")
    for name, values in rows.items():
        print(
            f"| {name} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )


if __name__ == "__main__":
    main()
