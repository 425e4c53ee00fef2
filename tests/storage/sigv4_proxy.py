#!/usr/bin/python3
"""An S3 front that checks AWS Signature V4 with botocore's own signer before passing a request on.

Listens on 127.0.0.1 (--port, 0 = any; the port is written to --port-file). A request must be signed
with --access-key/--secret-key: otherwise the answer is S3's 403 XML (AccessDenied, InvalidAccessKeyId
or SignatureDoesNotMatch). A good request is signed again for the upstream S3 server (--upstream, with
its own credentials) and its answer relayed; --throttle limits the relayed body to that many bytes/s.
"""
import argparse
import http.client
import http.server
import re
import sys
import time
import urllib.parse

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/s3/aws4_request, "
    r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--upstream", required=True, help="host:port of the S3 server")
    ap.add_argument("--upstream-key", default="S3RVER")
    ap.add_argument("--upstream-secret", default="S3RVER")
    ap.add_argument("--access-key", required=True)
    ap.add_argument("--secret-key", required=True)
    ap.add_argument("--throttle", type=int, default=0, help="body bytes per second (0: no limit)")
    args = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("sigv4_proxy: " + (fmt % a) + "\n")

        def deny(self, code, message):
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>%s</Code><Message>%s</Message>"
                    "</Error>" % (code, message)).encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body) if self.command != "HEAD" else 0))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.close_connection = True

        def verify(self, body):
            auth = self.headers.get("Authorization")
            if not auth:
                return self.deny("AccessDenied", "Anonymous access is denied")
            m = AUTH_RE.match(auth)
            if not m:
                return self.deny("AccessDenied", "Malformed Authorization header")
            key, _date, region, signed, signature = m.groups()
            if key != args.access_key:
                return self.deny("InvalidAccessKeyId", "The AWS access key Id you provided does not exist")
            headers = {}
            for name in signed.split(";"):
                if self.headers.get(name) is None:
                    return self.deny("AccessDenied", "Signed header %s is missing" % name)
                headers[name] = self.headers.get(name)
            request = AWSRequest(method=self.command, url="http://%s%s" % (headers.get("host", ""), self.path),
                                 headers=headers, data=body)
            request.context["timestamp"] = self.headers.get("x-amz-date", "")
            signer = S3SigV4Auth(Credentials(args.access_key, args.secret_key), "s3", region)
            canonical = signer.canonical_request(request)
            expected = signer.signature(signer.string_to_sign(request, canonical), request)
            if expected != signature:
                return self.deny("SignatureDoesNotMatch",
                                 "The request signature we calculated does not match the signature you provided")
            return True

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.verify(body) is not True:
                return
            # Sign again for the upstream server, keeping the range.
            upstream = AWSRequest(method=self.command, url="http://%s%s" % (args.upstream, self.path), data=body)
            if self.headers.get("Range"):
                upstream.headers["Range"] = self.headers.get("Range")
            S3SigV4Auth(Credentials(args.upstream_key, args.upstream_secret), "s3", "us-east-1").add_auth(upstream)
            conn = http.client.HTTPConnection(args.upstream, timeout=60)
            conn.request(self.command, self.path, body=body or None, headers=dict(upstream.headers.items()))
            resp = conn.getresponse()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("connection", "transfer-encoding", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if self.command == "HEAD":
                return
            chunk = 16384 if args.throttle else 1 << 20
            while True:
                data = resp.read(chunk)
                if not data:
                    break
                self.wfile.write(data)
                self.wfile.flush()
                if args.throttle:
                    time.sleep(len(data) / args.throttle)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    import os
    os.rename(args.port_file + ".tmp", args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
