#!/usr/bin/env python3
"""The two webhook APIs of a "core" kube-apiserver that the CRD API server
(k8s.io/apiextensions-apiserver) delegates to: TokenReview (is this bearer token valid, and
whose is it?) and SubjectAccessReview (may this user do this?). The CRD server itself is the
real one; no kube-apiserver package can be installed here, so its two answers come from this
script, which reads its rules anew at every request (so a test rotates a token by rewriting
a file):

  tokens file: one "TOKEN USER" per line
  allowed file: one "USER VERB RESOURCE" per line ("*" matches anything)

Usage: kube_core_standin.py PORT TOKENS_FILE ALLOWED_FILE (plain HTTP on 127.0.0.1).
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, TOKENS, ALLOWED = int(sys.argv[1]), sys.argv[2], sys.argv[3]


def lines(path):
    try:
        with open(path) as f:
            return [l.split() for l in f if l.strip() and not l.startswith("#")]
    except OSError:
        return []


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("standin: " + (fmt % args) + "\n")

    def do_GET(self):
        # The CRD server also watches the core server's Services (for conversion webhooks):
        # an empty list, and watches that stay quiet for a while.
        if "watch=" in self.path:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            time.sleep(50)
            self.wfile.write(b"0\r\n\r\n")
            return
        kind = self.path.rstrip("/").split("?")[0].split("/")[-1].capitalize().rstrip("s") + "List"
        out = json.dumps({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        spec = body.get("spec", {})
        path = self.path.split("?")[0]
        if path.endswith("/tokenreviews"):
            users = {t[0]: t[1] for t in lines(TOKENS) if len(t) >= 2}
            user = users.get(spec.get("token", ""))
            status = {"authenticated": user is not None}
            if user:
                status["user"] = {"username": user, "groups": ["system:authenticated"]}
            self.log_message("token review: %s", user or "refused")
        elif path.endswith("/subjectaccessreviews"):
            attrs = spec.get("resourceAttributes") or {}
            verb, resource = attrs.get("verb", ""), attrs.get("resource", "")
            user = spec.get("user", "")
            ok = any(
                len(r) >= 3 and r[0] in (user, "*") and r[1] in (verb, "*") and r[2] in (resource, "*")
                for r in lines(ALLOWED)
            )
            status = {"allowed": ok}
            if not ok:
                status["reason"] = "not in the stand-in's allowed list"
            self.log_message("access review: %s %s %s: %s", user, verb, resource, ok)
        else:
            self.send_error(404)
            return
        body["status"] = status
        out = json.dumps(body).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
