"""A fake OpenAI-compatible LLM server on loopback, for benchmarks and fault-injection tests.

``POST /v1/chat/completions`` waits ``delay`` seconds and answers the general expert's
``SelectCategory`` signature with valid JSON: a candidate number that depends only on the
request's text (so two runs give identical outputs), and a short reason. ``mode`` injects a
fault instead: ``http500``, ``http429``, ``stall`` (never answers in time), ``garbage`` (not
JSON) or ``off`` (a number outside the candidates).

    python benchmarks/fake_llm_server.py --port 8765 --delay 0.3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "http500", "http429", "stall", "garbage", "off")


def _answer(body: dict, mode: str) -> str:
    text = "\n".join(str(m.get("content", "")) for m in body.get("messages", []))
    last = str(body.get("messages", [{}])[-1].get("content", ""))
    n = len(re.findall(r"^\s*(\d+)\. ", last, flags=re.M)) or 1
    pick = int(hashlib.sha1(text.encode()).hexdigest(), 16) % n + 1
    if mode == "garbage":
        return "<<<not json at all"
    if mode == "off":
        pick = n + 7
    return json.dumps({"choice": pick, "reason": "fake server's pick"})


class FakeLLM(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int = 0, delay: float = 0.3, mode: str = "ok") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay, self.mode = delay, mode
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def start(self) -> FakeLLM:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLM

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # /v1/models
        self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

    def do_POST(self) -> None:
        srv = self.server
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        with srv._lock:
            srv.requests += 1
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        try:
            time.sleep(srv.delay if srv.mode != "stall" else 3600)
            if srv.mode == "http500":
                return self._send(500, {"error": {"message": "injected 500", "type": "server"}})
            if srv.mode == "http429":
                return self._send(429, {"error": {"message": "slow down", "type": "rate_limit"}})
            content = _answer(body, srv.mode)
            self._send(
                200,
                {
                    "id": f"fake-{srv.requests}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 100, "completion_tokens": 12, "total_tokens": 112},
                },
            )
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with srv._lock:
                srv.in_flight -= 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--delay", type=float, default=0.3)
    ap.add_argument("--mode", default="ok", choices=MODES)
    args = ap.parse_args()
    srv = FakeLLM(args.port, args.delay, args.mode)
    print(f"fake LLM at {srv.url} (delay {args.delay} s, mode {args.mode})", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
