"""Load and fault benchmark of `rluf serve` on loopback (issue 7, section 5).

    python benchmarks/serve.py [--seconds 60] [--clients 16] [--rate 0] [--reaction-share 0.2] [--kill-at 0.5]
                               [--write | --out PATH]

The gateway runs as a real `rluf serve` subprocess with SQLite (WAL, synchronous=NORMAL) in front of a fake
OpenAI-compatible upstream that answers at once; the stub and the N closed-loop clients run in this process
on one asyncio loop, on raw asyncio streams (HTTP/1.1 keep-alive) so that they cost little CPU. By
default the clients are closed-loop (each sends its next request as soon as it has an answer: the gateway
runs flat out, so its latency includes queueing); `--rate R` paces them to R chat requests/s in total
(open loop), which measures latency at a given throughput. Each client is its own user (its own API key),
continues its conversation for up to 4 turns, then starts a new one, and reacts ("love") to a share of its
answers. At `--kill-at` of the run the gateway is SIGKILLed and restarted on the same database; requests
in flight fail on the client side.

Reported (printed; with --write also written to benchmarks/results/serve.json, or to --out PATH):
  rps           answers received per second of serving time (the restart gap excluded)
  p50_ms/p99_ms the gateway's own added latency: its handler time minus the upstream call (Server-Timing)
  client_p50_ms/client_p99_ms  end-to-end latency seen by the clients (includes queueing under load)
  errors_5xx    5xx answers from the gateway; conn_errors: requests cut by the SIGKILL
  answered/logged       answers received by clients / assistant rows in the database
  lost_after_kill       answers a client received whose row is missing from the database (must be 0)
  logged_not_delivered  rows committed whose answer the SIGKILL cut before it reached the client
  reactions_sent/reactions_logged/reactions_lost  acknowledged reactions / rows / acknowledged but missing
  gateway_cpu_ms_per_request  the gateway process's CPU time per request (chat or reaction) while serving:
                the figure that does not depend on what else runs on the machine
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from rluf.utils import write_json  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, db: Path, stub_port: int, port: int) -> Path:
    cfg = f"""
server: {{host: 127.0.0.1, port: {port}, access_log: false}}
database: {{url: "sqlite:///{db}", sqlite_synchronous: NORMAL}}
backends:
  stub: {{kind: openai, base_url: "http://127.0.0.1:{stub_port}/v1", timeout_s: 10, retries: 1}}
experiment:
  name: bench
  arms: [{{name: control, backend: stub, share: 0.5}}, {{name: treatment, backend: stub, share: 0.5}}]
auth: {{api_keys_env: RLUF_API_KEYS, web_sessions: false}}
limits: {{rate_per_minute: 1000000, rate_burst: 100000}}
"""
    path = folder / "serve.yaml"
    path.write_text(cfg)
    return path


class Gateway:
    """`rluf serve` as a subprocess that can be SIGKILLed and restarted."""

    def __init__(self, config: Path, port: int, env: dict, log_path: Path):
        self.config, self.port, self.env, self.log_path = config, port, env, log_path
        self.proc: subprocess.Popen | None = None

    async def start(self, timeout: float = 180.0) -> float:
        t0 = time.perf_counter()
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "rluf", "serve", "--config", str(self.config)],
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        async with httpx.AsyncClient() as c:
            while time.perf_counter() - t0 < timeout:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited with {self.proc.returncode}; see {self.log_path}")
                try:
                    if (await c.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)).status_code == 200:
                        return time.perf_counter() - t0
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the gateway did not start in {timeout} s; see {self.log_path}")

    def cpu_s(self) -> float:
        """User + system CPU seconds of the gateway process so far (Linux /proc)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Stats:
    def __init__(self):
        self.answered: list[str] = []
        self.reacted: list[str] = []
        self.gateway_ms: list[float] = []
        self.client_ms: list[float] = []
        self.errors_5xx = 0
        self.errors_4xx = 0
        self.conn_errors = 0
        self.reaction_errors = 0


class RawHTTP:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: cheap, so the load generator's CPU stays small
    next to the gateway's on a 2-core machine (httpx costs about as much per request as the gateway)."""

    def __init__(self, port: int, key: str):
        self.port, self.key = port, key
        self.reader = self.writer = None

    async def request(self, method: str, path: str, body: dict) -> tuple[int, dict, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        data = json.dumps(body).encode()
        head = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        try:
            self.writer.write(head + data)
            return await read_response(self.reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            self.close()
            raise ConnectionError from None

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    body = await reader.readexactly(int(headers.get("content-length", 0)))
    return status, headers, body


async def fast_stub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The fake upstream, answering at once: an OpenAI-compatible chat completion echoing the last user
    message (the clients send plain-string content), on raw asyncio streams to keep its CPU cost small."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(ln.split(b":")[1]) for ln in head.split(b"\r\n")
                          if ln.lower().startswith(b"content-length"))
            req = json.loads(await reader.readexactly(length))
            answer = f"You said: {req['messages'][-1]['content']}"
            out = json.dumps({"id": "stub", "object": "chat.completion", "model": req.get("model"), "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}]}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                         + str(len(out)).encode() + b"\r\n\r\n" + out)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        writer.close()  # the gateway closed the connection (or was killed), or the run is over


async def client_loop(i: int, key: str, port: int, stop: asyncio.Event, stats: Stats, share: float,
                      rng: random.Random, interval: float) -> None:
    """One user. interval > 0: send a chat request every `interval` s (open loop); 0: as fast as answered."""
    c = RawHTTP(port, key)
    history: list[dict] = []
    conv = None
    next_t = time.perf_counter() + rng.random() * interval  # spread the clients' phases
    while not stop.is_set():
        if interval:
            delay = next_t - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_t = max(next_t + interval, time.perf_counter() - 1.0)  # at most 1 s of backlog
        if len(history) >= 8:
            history, conv = [], None
        msgs = history + [{"role": "user", "content": f"client {i} says {rng.random():.6f}"}]
        body = {"messages": msgs, **({"conversation_id": conv} if conv else {})}
        t0 = time.perf_counter()
        try:
            status, headers, data = await c.request("POST", "/v1/chat/completions", body)
        except ConnectionError:
            stats.conn_errors += 1
            history, conv = [], None
            await asyncio.sleep(0.25)  # the gateway is down (SIGKILL): back off until it is back
            continue
        if status >= 500:
            stats.errors_5xx += 1
            continue
        if status != 200:
            stats.errors_4xx += 1
            history, conv = [], None
            continue
        stats.client_ms.append((time.perf_counter() - t0) * 1e3)
        timing = dict(p.strip().split(";dur=") for p in headers["server-timing"].split(","))
        stats.gateway_ms.append(float(timing["gateway"]))
        j = json.loads(data)
        stats.answered.append(j["id"])
        history = msgs + [{"role": "assistant", "content": j["choices"][0]["message"]["content"]}]
        conv = j["conversation_id"]
        if rng.random() < share:
            try:
                status, _, _ = await c.request("POST", "/v1/reactions", {"message_id": j["id"], "type": "love"})
            except ConnectionError:
                stats.reaction_errors += 1
                continue
            if status == 201:
                stats.reacted.append(j["id"])
            else:
                stats.reaction_errors += 1
    c.close()


def db_ids(db: Path) -> tuple[set[str], set[str]]:
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        answers = {r[0] for r in conn.execute(text("SELECT message_id FROM messages WHERE role='assistant'"))}
        reactions = {r[0] for r in conn.execute(text("SELECT message_id FROM reactions"))}
    engine.dispose()
    return answers, reactions


async def run(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="rluf-bench-serve-"))
    db = tmp / "gw.db"
    stub_port, port = free_port(), free_port()
    stub = await asyncio.start_server(fast_stub, "127.0.0.1", stub_port)
    keys = {f"user{i:03d}": f"bench-key-{i:03d}-{os.urandom(8).hex()}" for i in range(args.clients)}
    env = {**os.environ, "RLUF_API_KEYS": ",".join(f"{u}:{k}" for u, k in keys.items()),
           "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    gw = Gateway(write_config(tmp, db, stub_port, port), port, env, tmp / "gateway.log")
    startup_s = await gw.start()
    print(f"gateway up in {startup_s:.1f} s (db {db})", flush=True)

    stats, stop = Stats(), asyncio.Event()
    rng = random.Random(0)
    interval = args.clients / args.rate if args.rate else 0.0
    tasks = [asyncio.create_task(client_loop(i, k, port, stop, stats, args.reaction_share,
                                             random.Random(rng.random()), interval))
             for i, k in enumerate(keys.values())]
    t_start = time.perf_counter()
    cpu0 = gw.cpu_s()
    await asyncio.sleep(args.seconds * args.kill_at)
    cpu = gw.cpu_s() - cpu0
    gw.kill()  # SIGKILL mid-run: in-flight requests are cut
    t_kill = time.perf_counter()
    restart_s = await gw.start()
    cpu0 = gw.cpu_s()
    downtime = time.perf_counter() - t_kill
    print(f"SIGKILL at {t_kill - t_start:.1f} s; restarted in {restart_s:.1f} s", flush=True)
    await asyncio.sleep(max(0.0, args.seconds - (time.perf_counter() - t_start - downtime)))
    stop.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t_start
    cpu += gw.cpu_s() - cpu0
    gw.stop()
    stub.close()

    logged, reactions_logged = db_ids(db)
    answered = set(stats.answered)
    g, c = np.array(stats.gateway_ms), np.array(stats.client_ms)
    serving_s = wall - downtime
    return {
        "seconds": round(serving_s, 2), "clients": args.clients, "target_rate": args.rate or None,
        "database": "sqlite (WAL, synchronous=NORMAL)",
        "rps": round(len(stats.answered) / serving_s, 1),
        "p50_ms": round(float(np.percentile(g, 50)), 3), "p99_ms": round(float(np.percentile(g, 99)), 3),
        "client_p50_ms": round(float(np.percentile(c, 50)), 2), "client_p99_ms": round(float(np.percentile(c, 99)), 2),
        "errors_5xx": stats.errors_5xx, "errors_4xx": stats.errors_4xx, "conn_errors": stats.conn_errors,
        "answered": len(answered), "logged": len(logged),
        "lost_after_kill": len(answered - logged), "logged_not_delivered": len(logged - answered),
        "reactions_sent": len(stats.reacted), "reactions_logged": len(reactions_logged),
        "reactions_lost": len(set(stats.reacted) - reactions_logged), "reaction_errors": stats.reaction_errors,
        "gateway_cpu_ms_per_request": round(cpu * 1e3 / max(1, len(stats.answered) + len(stats.reacted)), 3),
        "kill_at_s": round(args.seconds * args.kill_at, 1), "restart_s": round(restart_s, 2),
        "startup_s": round(startup_s, 2), "cpu_count": os.cpu_count(),
    }


RESULTS = ROOT / "benchmarks" / "results" / "serve.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options; `out` is where to write the results, None unless asked (--write or --out)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="serving time to measure (restart gap excluded)")
    ap.add_argument("--clients", type=int, default=16, help="concurrent closed-loop clients, one user each")
    ap.add_argument("--rate", type=float, default=0.0,
                    help="open loop: total chat requests/s spread over the clients (0: closed loop, flat out)")
    ap.add_argument("--reaction-share", type=float, default=0.2, help="share of answers that get a reaction")
    ap.add_argument("--kill-at", type=float, default=0.5, help="SIGKILL the gateway at this fraction of the run")
    ap.add_argument("--out", type=Path, default=None, help="write the results JSON here")
    ap.add_argument("--write", action="store_true", help=f"write the results to {RESULTS}")
    args = ap.parse_args(argv)
    if args.out is None and args.write:
        args.out = RESULTS
    return args


def main() -> None:
    args = parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))
    if args.out is not None:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
