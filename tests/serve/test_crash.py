"""SIGKILL the gateway process mid-traffic and restart it: every answer a client received is in the database,
and arms are the same after the restart."""

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn
from sqlalchemy import create_engine, text

from .conftest import ALICE_KEY, BOB_KEY, free_port
from .stub import make_stub_app

pytestmark = pytest.mark.slow  # ~10 s: two gateway processes

GATEWAY = """
import sys
from rluf.config import load_config
from rluf.serve import ServeConfig, serve
serve(load_config(ServeConfig, sys.argv[1]))
"""


def start_gateway(cfg_path, port, log):
    proc = subprocess.Popen([sys.executable, "-c", GATEWAY, str(cfg_path)], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "RLUF_API_KEYS": f"alice:{ALICE_KEY},bob:{BOB_KEY}"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the gateway did not start within 60 s")


@pytest.fixture
def stub_port():
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_stub_app(delay_s=0.01), host="127.0.0.1", port=port,
                                           log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield port
    server.should_exit = True
    thread.join(timeout=10)


def test_sigkill_loses_no_answered_turn(tmp_path, stub_port):
    port, db = free_port(), tmp_path / "gw.db"
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"""
server: {{port: {port}, access_log: false}}
database: {{url: "sqlite:///{db}"}}
backends: {{up: {{kind: openai, base_url: "http://127.0.0.1:{stub_port}/v1", retries: 0}}}}
experiment: {{name: crash, arms: [{{name: c, backend: up, share: 0.5}}, {{name: t, backend: up, share: 0.5}}]}}
limits: {{rate_per_minute: 100000, rate_burst: 10000}}
""")
    answered, stop = [], threading.Event()

    def client(key):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    answered.append(r.json()["id"])

    with open(tmp_path / "gw.log", "wb") as log:
        proc = start_gateway(cfg, port, log)
        with ThreadPoolExecutor(4) as pool:
            for key in (ALICE_KEY, BOB_KEY, ALICE_KEY, BOB_KEY):
                pool.submit(client, key)
            time.sleep(1.0)
            proc.send_signal(signal.SIGKILL)  # mid-traffic: requests in flight are cut
            proc.wait()
            n_before = len(answered)
            proc = start_gateway(cfg, port, log)
            time.sleep(0.5)
            stop.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        logged = {r[0] for r in conn.execute(text("SELECT message_id FROM messages WHERE role='assistant'"))}
        arms = conn.execute(text("SELECT user_id, COUNT(DISTINCT model_id) FROM messages "
                                 "WHERE role='assistant' GROUP BY user_id")).all()
    engine.dispose()
    assert n_before > 0 and len(answered) > n_before  # traffic before the kill and after the restart
    assert set(answered) <= logged  # nothing answered is missing
    assert len(logged) - len(answered) <= 4  # at most the requests in flight at the kill were logged unsent
    assert sorted(arms) == [("alice", 1), ("bob", 1)]  # sticky arms across the restart
