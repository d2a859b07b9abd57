#!/usr/bin/env python3
"""Loads an HTML report in headless Chromium through the DevTools protocol (standard library only: the WebSocket
client is written here) and prints, as JSON on stdout: every console error, uncaught exception and error log entry
of the page; each <svg class="plot"> with its rendered size and its marks (drawn = marks with a non-empty bounding
box); every number tied to the JSON output (elements with data-j: pointer, scale, text); and writes a full-page
screenshot. Used by tests/test_report.cpp (ReportBrowser.*).

usage: report_browser.py CHROMIUM PAGE.html SCREENSHOT.png
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

DEADLINE = time.monotonic() + 120  # the whole run; a hung browser fails the test instead of hanging it


def left():
    t = DEADLINE - time.monotonic()
    if t <= 0:
        raise TimeoutError("report_browser.py: the browser did not finish within 120 s")
    return t


class WebSocket:
    """A minimal RFC 6455 client: text frames, client masking, ping/pong, fragmented messages."""

    def __init__(self, url):
        m = re.match(r"ws://([^:/]+):(\d+)(/.*)", url)
        if not m:
            raise ValueError("unexpected DevTools URL " + url)
        host, port, path = m.group(1), int(m.group(2)), m.group(3)
        self.sock = socket.create_connection((host, port), timeout=left())
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            resp += chunk
        head, self.buf = resp.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError("WebSocket handshake refused: " + head.split(b"\r\n")[0].decode(errors="replace"))

    def _frame(self, opcode, data):
        hdr = bytearray([0x80 | opcode])
        n = len(data)
        if n < 126:
            hdr.append(0x80 | n)
        elif n < 65536:
            hdr.append(0x80 | 126)
            hdr += struct.pack(">H", n)
        else:
            hdr.append(0x80 | 127)
            hdr += struct.pack(">Q", n)
        mask = os.urandom(4)
        hdr += mask
        self.sock.sendall(bytes(hdr) + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def send(self, text):
        self._frame(0x1, text.encode())

    def _read(self, n):
        while len(self.buf) < n:
            self.sock.settimeout(left())
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            msg += payload
            if b0 & 0x80:
                return msg.decode("utf-8", errors="replace")


class DevTools:
    def __init__(self, url):
        self.ws = WebSocket(url)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == my:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            if "method" in m:
                self.events.append(m)

    def wait_event(self, name):
        for e in self.events:
            if e["method"] == name:
                return e
        while True:
            m = json.loads(self.ws.recv())
            if "method" in m:
                self.events.append(m)
                if m["method"] == name:
                    return m


PROBE = r"""(() => {
  const svgs = Array.from(document.querySelectorAll('svg.plot')).map(s => {
    const b = s.getBoundingClientRect();
    let marks = 0, drawn = 0;
    s.querySelectorAll('.mark').forEach(m => { marks++; const r = m.getBBox(); if (r.width > 0 || r.height > 0) drawn++; });
    return {id: s.id, width: b.width, height: b.height, marks: marks, drawn: drawn};
  });
  const numbers = Array.from(document.querySelectorAll('.v[data-j]')).map(e => ({
    j: e.getAttribute('data-j'), s: Number(e.getAttribute('data-s')), text: e.textContent,
    shown: e.getClientRects().length > 0}));
  return {title: document.title, svgs: svgs, numbers: numbers, scripts: document.scripts.length,
          width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight};
})()"""


def main():
    chrome, page, png = sys.argv[1], os.path.abspath(sys.argv[2]), sys.argv[3]
    profile = tempfile.mkdtemp(prefix="ctrust-chromium-")
    log = open(os.path.join(profile, "stderr.txt"), "wb")
    proc = subprocess.Popen(
        [chrome, "--headless=new", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", "--mute-audio",
         "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={profile}",
         "--window-size=1280,900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        while not (os.path.exists(port_file) and open(port_file).read().count("\n") >= 1):
            if proc.poll() is not None:
                raise RuntimeError(f"chromium exited with status {proc.returncode} before DevTools was up")
            left()
            time.sleep(0.05)
        port = int(open(port_file).read().split("\n")[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=left()) as r:
            targets = json.load(r)
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        dt = DevTools(ws_url)
        for domain in ("Runtime", "Log", "Page"):
            dt.call(domain + ".enable")
        dt.call("Page.navigate", url="file://" + page)
        dt.wait_event("Page.loadEventFired")
        probe = dt.call("Runtime.evaluate", expression=PROBE, returnByValue=True)["result"]["value"]
        shot = dt.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                       clip={"x": 0, "y": 0, "width": probe["width"], "height": probe["height"], "scale": 1})
        with open(png, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        errors = []
        for e in dt.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:500])
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console." + p["type"] + ": " + json.dumps(p.get("args", []))[:500])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
        probe["errors"] = errors
        probe["screenshot"] = png
        try:
            dt.call("Browser.close")
        except (ConnectionError, OSError):
            pass
        json.dump(probe, sys.stdout)
        print()
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # one line for the test's message
        print(f"report_browser.py: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
