"""A loopback HTTP server that answers the Hub API calls `huggingface_hub` makes to create a dataset repo,
commit files to it and tag the commit, and records what it is sent. It listens on 127.0.0.1 only and
stops with its context."""

from __future__ import annotations

import base64
import json
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["fake_hub"]

COMMIT = "c0ffee" * 6 + "beef"


class _Hub:
    def __init__(self):
        self.requests: list[tuple[str, str]] = []
        self.committed: dict[str, bytes] = {}  # path in repo -> content
        self.tags: list[dict] = []
        self.validated: list[str] = []  # README.md contents sent for YAML validation
        self.fail_commit = False


def _handler(hub: _Hub, endpoint: list[str]):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def _reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_GET(self):
            hub.requests.append(("GET", self.path))
            if self.path.split("?")[0].endswith("/refs"):
                return self._reply(200, {"branches": [{"name": "main", "ref": "refs/heads/main", "targetCommit": COMMIT}],
                                         "tags": [], "converts": []})
            self._reply(404, {"error": f"not served: {self.path}"})

        def do_POST(self):
            body = self._body()
            hub.requests.append(("POST", self.path))
            path = self.path.split("?")[0]
            if path == "/api/validate-yaml":
                hub.validated.append(json.loads(body)["content"])
                return self._reply(200, {"warnings": [], "errors": []})
            if path == "/api/repos/create":
                name = json.loads(body)
                return self._reply(200, {"url": f"{endpoint[0]}/datasets/{name.get('organization')}/{name['name']}"})
            if "/preupload/" in path:
                files = json.loads(body)["files"]
                return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                   for f in files]})
            if "/commit/" in path:
                if hub.fail_commit:
                    return self._reply(500, {"error": "the test's hub refuses this commit"})
                for line in body.decode().splitlines():
                    entry = json.loads(line)
                    if entry.get("key") == "file":
                        value = entry["value"]
                        hub.committed[value["path"]] = base64.b64decode(value["content"])
                repo = path.split("/api/datasets/")[1].split("/commit/")[0]
                return self._reply(200, {"commitUrl": f"{endpoint[0]}/datasets/{repo}/commit/{COMMIT}",
                                         "commitOid": COMMIT, "pullRequestUrl": None})
            if "/tag/" in path:
                hub.tags.append(json.loads(body or b"{}") | {"revision": path.rsplit("/", 1)[1]})
                return self._reply(200, {})
            self._reply(404, {"error": f"not served: {self.path}"})

    return Handler


@contextmanager
def fake_hub():
    hub = _Hub()
    endpoint: list[str] = [""]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hub, endpoint))
    endpoint[0] = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint[0], hub
    finally:
        server.shutdown()
        server.server_close()
