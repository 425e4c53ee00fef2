#!/usr/bin/python3
"""A small HTTP server for model download tests: serves the files of --dir

  /files/<name>                          the file (HEAD, GET, Range: bytes=N- or bytes=N-M)
  /<owner>/<name>/resolve/<rev>/<file>   Hugging Face's layout: 302 to /cdn/<file> (only --repo at --revision)

with an ETag holding the file's SHA-256; /resolve/ redirects carry it as X-Linked-Etag (as the hub does for
large files) and the /cdn/ answer's own ETag is no checksum. --token makes /resolve/ answer
401 without 'Authorization: Bearer TOKEN'. --break-after N sends N bytes of a GET's body, then closes;
--corrupt serves flipped bytes under the right ETag. The port goes to --port-file.
"""
import argparse
import hashlib
import http.server
import os
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--repo", default="test/tiny")
    ap.add_argument("--revision", default="main")
    ap.add_argument("--token", default="")
    ap.add_argument("--break-after", type=int, default=-1)
    ap.add_argument("--corrupt", action="store_true")
    args = ap.parse_args()
    digests = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("model_http_server: " + (fmt % a) + "\n")

        def status_only(self, code, extra=None):
            self.send_response(code)
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def digest(self, name):
            if name not in digests:
                digests[name] = hashlib.sha256(open(os.path.join(args.dir, name), "rb").read()).hexdigest()
            return digests[name]

        def serve_file(self, name, etag=None):
            path = os.path.join(args.dir, name)
            if "/" in name or not os.path.isfile(path):
                return self.status_only(404)
            data = open(path, "rb").read()
            if args.corrupt:
                data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
            start, end, ranged = 0, len(data), False
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes="):
                first, _, last = rng[6:].partition("-")
                start, end, ranged = int(first), (int(last) + 1 if last else len(data)), True
                if start >= len(data) and len(data) > 0:
                    return self.status_only(416)
            body = data[start:min(end, len(data))]
            self.send_response(206 if ranged else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", '"%s"' % (etag or self.digest(name)))
            self.send_header("Accept-Ranges", "bytes")
            if ranged:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, start + len(body) - 1, len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if args.break_after >= 0 and len(body) > args.break_after:
                self.wfile.write(body[:args.break_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def handle_any(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            if len(parts) == 2 and parts[0] == "files":
                return self.serve_file(parts[1])
            if len(parts) == 2 and parts[0] == "cdn":  # a CDN whose ETag is no checksum of the file
                return self.serve_file(parts[1], etag="0" * 32)
            if len(parts) == 5 and parts[2] == "resolve":
                if args.token and self.headers.get("Authorization") != "Bearer " + args.token:
                    return self.status_only(401)
                if "/".join(parts[:2]) != args.repo or parts[3] != args.revision:
                    return self.status_only(404)
                if not os.path.isfile(os.path.join(args.dir, parts[4])):
                    return self.status_only(404)
                # As the hub does for large files: the SHA-256 and size on the redirect.
                size = os.path.getsize(os.path.join(args.dir, parts[4]))
                return self.status_only(302, {"Location": "/cdn/" + parts[4],
                                              "X-Linked-Etag": '"%s"' % self.digest(parts[4]),
                                              "X-Linked-Size": str(size)})
            return self.status_only(404)

        do_GET = do_HEAD = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
