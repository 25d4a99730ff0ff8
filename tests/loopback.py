"Pieces the loopback fakes of the tests share: a quiet JSON request handler, and a server run for a fixture."
import http.server, json, threading


class JsonHandler(http.server.BaseHTTPRequestHandler):
    "A fake endpoint's handler: logs nothing, answers with `reply`."
    def log_message(self, *args): pass

    def reply(self, status, body, headers=()):
        "Answer `status` with `body` (bytes as they are, anything else as JSON) and extra `headers` (name, value)."
        body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        for k, v in (('content-type', 'application/json'), ('content-length', str(len(body))), *headers): self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def serving(server):
    "A fixture's body: serve `server` from a daemon thread, yield it, shut it down after."
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
