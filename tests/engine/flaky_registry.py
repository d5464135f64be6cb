"""A registry front that answers one request with the course registry's tag race: the first
``HEAD .../manifests/<tag>`` from dockerd (user agent ``docker/``) gets ``500``, as when
distribution 2.8 reads a tag's link file while it is rewritten. Everything else is passed on
to the real registry. Run: ``python flaky_registry.py PORT UPSTREAM_PORT``."""

from __future__ import annotations

import http.client
import http.server
import re
import socketserver
import sys
import threading

TAG_HEAD = re.compile(r"/v2/.+/manifests/[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_failed = threading.Event()


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = 5000

    def handle_one_request(self) -> None:
        if self.rfile.peek(1)[:1] == b"\x16":  # BuildKit's TLS probe: a plain HTTP answer
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            self.close_connection = True
            return
        super().handle_one_request()

    def _race(self) -> bool:
        ua = self.headers.get("User-Agent", "")
        if self.command != "HEAD" or not ua.startswith("docker/") or _failed.is_set():
            return False
        if not TAG_HEAD.match(self.path):
            return False
        _failed.set()
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return True

    def _forward(self) -> None:
        if self._race():
            return
        size = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(size) if size else None
        up = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=120)
        up.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():  # a list: dockerd repeats Accept
            if k.lower() != "connection":
                up.putheader(k, v)
        up.endheaders(body)
        answer = up.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for k, v in answer.getheaders():
            if k.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(k, v.replace(f":{self.upstream}/", f":{self.server.server_port}/"))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    def log_message(self, *args) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


if __name__ == "__main__":
    Front.upstream = int(sys.argv[2])
    Server(("127.0.0.1", int(sys.argv[1])), Front).serve_forever()
