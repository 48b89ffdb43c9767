"""Writes a Hugging Face cache the way huggingface_hub itself writes one.

A small HTTP server stands in for the Hub (the HEAD/GET routes that
`hf_hub_download` uses: a redirect carrying X-Repo-Commit and X-Linked-Etag,
the bytes behind it), and the pinned huggingface_hub downloads one file from
it into OUT. The tree it leaves (blobs/, refs/main, the snapshot's relative
link; its .locks/ folder removed) is the fixture the Rust tests read in place
and compare their own writing against (xtask/src/fetch/hub/tests.rs).

    python -m venv venv && venv/bin/pip install -r scripts/requirements-hub.txt
    venv/bin/python scripts/hf_cache_fixture.py xtask/tests/fixtures/hf-cache
"""

import hashlib
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub

# Shared with the Rust test: the repository, file, commit and bytes.
REPO = "acme/vit"
FILE = "sub/model.safetensors"
COMMIT = "4a1b2c3d4e5f60718293a4b5c6d7e8f901234567"
CONTENT = bytes((i * 7) % 251 for i in range(4096))
SHA256 = hashlib.sha256(CONTENT).hexdigest()


class Hub(BaseHTTPRequestHandler):
    def _answer(self, body: bool):
        resolve = f"/{REPO}/resolve/main/{FILE}"
        if self.path == resolve:
            self.send_response(302)
            host, port = self.server.server_address
            self.send_header("Location", f"http://{host}:{port}/cdn/{SHA256}")
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("X-Linked-Etag", f'"{SHA256}"')
            self.send_header("X-Linked-Size", str(len(CONTENT)))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == f"/cdn/{SHA256}":
            self.send_response(200)
            self.send_header("Content-Length", str(len(CONTENT)))
            self.end_headers()
            if body:
                self.wfile.write(CONTENT)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def log_message(self, *args):
        pass


def main(out: Path):
    if out.exists():
        shutil.rmtree(out)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host, port = server.server_address
    path = huggingface_hub.hf_hub_download(
        REPO,
        FILE,
        cache_dir=out,
        endpoint=f"http://{host}:{port}",
        token=False,
    )
    server.shutdown()
    shutil.rmtree(out / ".locks", ignore_errors=True)
    assert Path(path).read_bytes() == CONTENT
    print(f"huggingface_hub {huggingface_hub.__version__} wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
