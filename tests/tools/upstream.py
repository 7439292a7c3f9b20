#!/usr/bin/env python3
"""An asset upstream for the cache tests: serves the files of a directory over HTTP/1.1 on
loopback, one thread per connection, with Content-Length, ETag and Last-Modified (and 304 for a
matching If-None-Match), at most RATE bytes per second per response (0: no limit). Every GET is
one line "GET <path> <status>" on standard output, flushed, after "ready" once it listens.
A path under /moved/ is redirected (302) to the same path without it, as a mirror director
would; one under /loop/ is redirected to itself.

usage: upstream.py DIR PORT [RATE [HOST [LOG]]]   (HOST: 127.0.0.1; LOG: GET lines go to this
file instead of standard output)
"""
import email.utils
import http.server
import os
import sys
import time

ROOT, PORT = sys.argv[1], int(sys.argv[2])
RATE = int(sys.argv[3]) if len(sys.argv) > 3 else 0
HOST = sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1"
LOG = open(sys.argv[5], "a", buffering=1) if len(sys.argv) > 5 else sys.stdout


def note(line):
    print(line, file=LOG, flush=True)
CHUNK = 64 * 1024


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        for prefix, target in (("/moved/", lambda p: p[len("/moved"):]), ("/loop/", lambda p: p)):
            if self.path.startswith(prefix):
                note(f"GET {self.path} 302")
                self.send_response(302)
                self.send_header("Location", target(self.path))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        path = os.path.normpath(os.path.join(ROOT, self.path.lstrip("/").split("?")[0]))
        if not path.startswith(os.path.abspath(ROOT)) or not os.path.isfile(path):
            note(f"GET {self.path} 404")
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        st = os.stat(path)
        etag = f'"{st.st_size:x}-{int(st.st_mtime):x}"'
        if self.headers.get("If-None-Match") == etag:
            note(f"GET {self.path} 304")
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        note(f"GET {self.path} 200")
        self.send_response(200)
        self.send_header("Content-Length", str(st.st_size))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))
        self.end_headers()
        started = time.monotonic()
        sent = 0
        with open(path, "rb") as f:
            while True:
                data = f.read(CHUNK)
                if not data:
                    break
                self.wfile.write(data)
                sent += len(data)
                if RATE:
                    ahead = sent / RATE - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)


server = http.server.ThreadingHTTPServer((HOST, PORT), Handler)
server.daemon_threads = True
print("ready", flush=True)
server.serve_forever()
