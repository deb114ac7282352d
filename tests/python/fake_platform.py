"""A fake WeChat token platform for the Python tests (the C++ tests have
tests/support/fake_platform.*).

Run as a process (so that forked test workers never share its threads):
    python3 fake_platform.py            prints "PORT\n", serves until killed
Routes:
    GET  /cgi-bin/token?grant_type=client_credential&appid=A&secret=S   WeChat's plain API
    POST /cgi-bin/stable_token  {"grant_type", "appid", "secret", "force_refresh"}
    GET  /_control/stats        {"fetches": N}
    POST /_control/config       {"delay": seconds, "errcode": N|0, "errmsg": "...",
                                 "expires_in": N, "secret": "..."}
Each fetch answers a new token "token-N" unless an errcode is configured, or
the secret is not the configured one (errcode 40125, "invalid appsecret").
"""

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_lock = threading.Lock()
_state = {"fetches": 0, "delay": 0.0, "errcode": 0, "errmsg": "", "expires_in": 7200,
          "secret": "s3cret-value"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _answer(self, body, status=200):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fetch(self, appid, secret):
        with _lock:
            _state["fetches"] += 1
            n = _state["fetches"]
            delay, errcode, errmsg = _state["delay"], _state["errcode"], _state["errmsg"]
            expires_in, good_secret = _state["expires_in"], _state["secret"]
        if delay:
            time.sleep(delay)
        if secret != good_secret:
            return self._answer({"errcode": 40125, "errmsg": "invalid appsecret"})
        if errcode:
            return self._answer({"errcode": errcode, "errmsg": errmsg})
        self._answer({"access_token": f"token-{n}-{appid}", "expires_in": expires_in})

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_control/stats":
            with _lock:
                return self._answer({"fetches": _state["fetches"]})
        if url.path == "/cgi-bin/token":
            q = parse_qs(url.query)
            return self._fetch(q.get("appid", [""])[0], q.get("secret", [""])[0])
        self._answer({"errcode": 404, "errmsg": "no such route"}, 404)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        url = urlsplit(self.path)
        if url.path == "/_control/config":
            with _lock:
                _state.update(body)
                if body.get("reset"):
                    _state["fetches"] = 0
            return self._answer({"ok": True})
        if url.path == "/cgi-bin/stable_token":
            return self._fetch(body.get("appid", ""), body.get("secret", ""))
        self._answer({"errcode": 404, "errmsg": "no such route"}, 404)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
