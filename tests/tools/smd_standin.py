#!/usr/bin/env python3
"""A small stand-in for OpenCHAMI SMD (the real one cannot be installed here: its module is not
served by the Go module proxy), for tests/smd.rs. It serves the two public collections netbootd
reads, takes new entries the way SMD does (POST of an interface or of {"Components": [...]}),
and can be told to misbehave:

    GET  /hsm/v2/Inventory/EthernetInterfaces   a JSON array
    GET  /hsm/v2/State/Components               {"Components": [...]}
    POST the same paths                          add entries (MACs normalised as SMD does)
    GET  /control?mode=M                         ok | 503 | empty | truncated | stall | huge | html
    GET  /control                                the mode, collection GETs served, last auth
    GET  /inventory.json                         a netbootd JSON inventory (--backend-http-url),
                                                 with the same modes and an ETag (304 to a
                                                 matching If-None-Match); POST replaces it
    GET  /v1/boot/M                              pixiecore's API: the answer POSTed for M, else 404
    GET  /boot/v1/bootscript?mac=M               a BSS-shaped boot script for an interface
                                                 it holds (404 otherwise): kernel and initrd
                                                 from SMD_BSS_ASSETS (a URL), marker bss
    Filters as SMD's: EthernetInterfaces?MACAddress=..(repeated), Components?id=..(repeated)

Usage: smd_standin.py PORT [INTERFACES.json COMPONENTS.json]
It listens on 127.0.0.1, or on SMD_BIND. With SMD_TLS_CERT and SMD_TLS_KEY set it serves HTTPS
(Python's ssl, that is OpenSSL), and with SMD_TLS_CLIENT_CA too it requires a client
certificate issued by that CA.
"""
import hashlib
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

STATE = {"interfaces": [], "components": [], "inventory": {}, "pixiecore": {}, "mode": "ok",
         "requests": 0, "auth": None, "not_modified": 0}
LOCK = threading.Lock()

PROBLEM_503 = {
    "type": "about:blank",
    "title": "Service Unavailable",
    "detail": "HSM's database is unhealthy: HMSDS handle is not open.",
    "status": 503,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, status, body, ctype="application/json", length=None, headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self):
        url = urlparse(self.path)
        if url.path.startswith("/v1/boot/"):
            with LOCK:
                STATE["requests"] += 1
                answer = STATE["pixiecore"].get(url.path[len("/v1/boot/"):])
            if answer is None:
                return self.send(404, b"unknown machine\n", "text/plain")
            return self.send(200, json.dumps(answer).encode())
        if url.path == "/boot/v1/bootscript":
            return self.bootscript(parse_qs(url.query).get("mac", [""])[0].lower())
        if url.path == "/control":
            query = parse_qs(url.query)
            with LOCK:
                if "mode" in query:
                    STATE["mode"] = query["mode"][0]
                body = json.dumps({"mode": STATE["mode"], "requests": STATE["requests"],
                                   "auth": STATE["auth"],
                                   "not_modified": STATE["not_modified"]}).encode()
            return self.send(200, body)
        if url.path == "/inventory.json":
            with LOCK:
                STATE["requests"] += 1
                STATE["auth"] = self.headers.get("Authorization")
                mode = STATE["mode"]
                body = json.dumps({} if mode == "empty" else STATE["inventory"],
                                  indent="\t").encode()
                etag = '"%s"' % hashlib.sha256(body).hexdigest()[:16]
                unchanged = mode == "ok" and self.headers.get("If-None-Match") == etag
                if unchanged:
                    STATE["not_modified"] += 1
            if unchanged:
                return self.send(304, b"", length=0, headers=[("ETag", etag)])
            if mode == "ok":
                return self.send(200, body, headers=[("ETag", etag)])
            return self.misbehave(mode, body, url)
        if url.path not in ("/hsm/v2/Inventory/EthernetInterfaces", "/hsm/v2/State/Components"):
            return self.send(404, json.dumps({"title": "Not Found", "status": 404}).encode(),
                             "application/problem+json")
        with LOCK:
            STATE["requests"] += 1
            STATE["auth"] = self.headers.get("Authorization")
            mode = STATE["mode"]
            query = parse_qs(url.query)
            if url.path.endswith("EthernetInterfaces"):
                data = [] if mode == "empty" else STATE["interfaces"]
                if "MACAddress" in query:  # repeated: any of them (SMD's filters)
                    wanted = {m.lower() for m in query["MACAddress"]}
                    data = [i for i in data if i["MACAddress"] in wanted]
            else:
                comps = [] if mode == "empty" else STATE["components"]
                if "id" in query:
                    wanted = {i.lower() for i in query["id"]}
                    comps = [c for c in comps if c["ID"].lower() in wanted]
                data = {"Components": comps}
        body = json.dumps(data).encode()
        self.misbehave(mode, body, url)

    def misbehave(self, mode, body, url):
        """Answers with `body` as the mode says."""
        if mode == "503":
            return self.send(503, json.dumps(PROBLEM_503).encode(), "application/problem+json")
        if mode == "html":
            return self.send(200, b"<html>login</html>", "text/html")
        if mode == "truncated":
            return self.send(200, body[: len(body) // 2], length=len(body))
        if mode == "stall":
            time.sleep(30)
            return self.send(200, body)
        if mode == "huge" and not url.path.endswith("Components"):
            huge = b"[" + b",".join([b'{"MACAddress":"x"}'] * 1_200_000) + b"]"
            return self.send(200, huge)
        self.send(200, body)

    def bootscript(self, mac):
        with LOCK:
            known = any(i["MACAddress"] == mac for i in STATE["interfaces"])
        if not known:
            return self.send(404, b"no such MAC\n", "text/plain")
        assets = os.environ.get("SMD_BSS_ASSETS", "http://127.0.0.1/assets")
        script = (f"#!ipxe\nkernel {assets}/vmlinuz initrd=initrd.img console=ttyS0,115200 "
                  f"panic=-1 netbootd-test=bss mac={mac}\ninitrd {assets}/initrd.img\nboot\n")
        self.send(200, script.encode(), "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        entry = json.loads(self.rfile.read(length) or b"null")
        with LOCK:
            if self.path == "/inventory.json":
                STATE["inventory"] = entry
            elif self.path.startswith("/v1/boot/"):
                STATE["pixiecore"][self.path[len("/v1/boot/"):]] = entry
            elif self.path == "/hsm/v2/Inventory/EthernetInterfaces":
                entry["MACAddress"] = entry["MACAddress"].lower().replace("-", ":")
                entry["ID"] = entry["MACAddress"].replace(":", "")
                STATE["interfaces"] = [i for i in STATE["interfaces"] if i["ID"] != entry["ID"]]
                STATE["interfaces"].append(entry)
            elif self.path == "/hsm/v2/State/Components":
                ids = {c["ID"] for c in entry["Components"]}
                STATE["components"] = [c for c in STATE["components"] if c["ID"] not in ids]
                STATE["components"].extend(entry["Components"])
            else:
                return self.send(404, b'{"status":404}', "application/problem+json")
        self.send(201, b"[]")


def main():
    port = int(sys.argv[1])
    if len(sys.argv) == 4:
        with open(sys.argv[2]) as f:
            STATE["interfaces"] = json.load(f)
        for i in STATE["interfaces"]:  # as SMD stores them
            i["MACAddress"] = i["MACAddress"].lower().replace("-", ":")
            i.setdefault("ID", i["MACAddress"].replace(":", ""))
        with open(sys.argv[3]) as f:
            STATE["components"] = json.load(f)["Components"]
    server = ThreadingHTTPServer((os.environ.get("SMD_BIND", "127.0.0.1"), port), Handler)
    server.daemon_threads = True
    if os.environ.get("SMD_TLS_CERT"):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(os.environ["SMD_TLS_CERT"], os.environ["SMD_TLS_KEY"])
        if os.environ.get("SMD_TLS_CLIENT_CA"):
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(os.environ["SMD_TLS_CLIENT_CA"])
        # The handshake runs in the handler's thread (a failed one ends only that connection).
        server.socket = context.wrap_socket(server.socket, server_side=True,
                                            do_handshake_on_connect=False)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
