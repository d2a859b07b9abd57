# A loopback stand-in for an OpenAI-compatible server that answers every completion at once with a fixed text
# (no log-probabilities): the client-overhead figures of docs/benchmarks.md, "Remote backend".
# Usage: python3 bench/openai_stub.py PORT ok|500   (500: every GET /v1/models fails with HTTP 500)
import http.server, json, sys, threading
mode = sys.argv[2]
count = {"n": 0}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        count["n"] += 1
        if mode == "500": return self.reply(500, {"error": {"message": "CUDA out of memory"}})
        self.reply(200, {"data": [{"id": "stub", "owned_by": "me"}]})
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); body = json.loads(self.rfile.read(n) or b"{}")
        count["n"] += 1
        if self.path.endswith("/tokenize"): return self.reply(404, {"detail": "Not Found"})
        sys.stderr.write(json.dumps({k: v for k, v in body.items() if k != "prompt"}) + "\n")
        self.reply(200, {"choices": [{"index": 0, "text": "I disagree.", "finish_reason": "stop"}]})
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
