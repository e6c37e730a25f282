#!/usr/bin/env python3
"""The browser demo end to end: serves web/ on 127.0.0.1, opens the page in
headless Chromium through chromedriver (WebDriver over HTTP; Python's standard library
only), waits for training to finish, requires the test accuracy, draws digits on the
page's canvas with pointer events and requires that the classifier answers, and saves
a screenshot. Needs `web/build.sh` to have run, `chromium` and `chromedriver` (Debian:
`apt-get install chromium chromium-driver`). Exits non-zero on any failure; a missing
browser or driver is a failure, never a skip.

    python3 web/e2e.py [--epochs 15] [--min-accuracy 0.9] [--device gpu|cpu]
                       [--screenshot target/web-demo.png] [--json target/web-demo.json]
"""
import argparse
import base64
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

WEB = os.path.dirname(os.path.abspath(__file__))


def fail(msg):
    print(f"web/e2e.py: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        fail(f"WebDriver {method} {url}: {e.code} {e.read().decode(errors='replace')[:2000]}")


class Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".wasm": "application/wasm", ".js": "text/javascript"}

    def log_message(self, *args):
        pass


# Strokes in the pad's 224 x 224 coordinates, with the digit they should read as.
def ellipse(cx, cy, rx, ry, n=40):
    import math
    return [[cx + rx * math.sin(2 * math.pi * k / n), cy - ry * math.cos(2 * math.pi * k / n)]
            for k in range(n + 1)]


DIGITS = [
    (0, [ellipse(112, 112, 55, 85)]),
    (1, [[[112, 25], [112, 200]]]),
    (7, [[[50, 30], [175, 30], [95, 200]]]),
]

DRAW = """
const [strokes, done] = [arguments[0], arguments[arguments.length - 1]];
const pad = document.getElementById('pad');
document.getElementById('clear').click();
window.wgradDemo.prediction = null;
const r = pad.getBoundingClientRect();
const fire = (type, p) => pad.dispatchEvent(new PointerEvent(type, {
  clientX: r.left + p[0] * r.width / 224, clientY: r.top + p[1] * r.height / 224,
  bubbles: true, pointerId: 1, isPrimary: true, buttons: type === 'pointerup' ? 0 : 1 }));
for (const s of strokes) {
  const pts = [];
  for (let i = 0; i + 1 < s.length; i++)   // densify: a point every 4 pixels
    for (let t = 0; t < 1; t += 4 / Math.hypot(s[i+1][0] - s[i][0], s[i+1][1] - s[i][1]) || 1)
      pts.push([s[i][0] + t * (s[i+1][0] - s[i][0]), s[i][1] + t * (s[i+1][1] - s[i][1])]);
  pts.push(s[s.length - 1]);
  fire('pointerdown', pts[0]);
  for (const p of pts.slice(1)) fire('pointermove', p);
  fire('pointerup', pts[pts.length - 1]);
}
const wait = () => window.wgradDemo.prediction !== null
  ? done([window.wgradDemo.prediction, window.wgradDemo.probabilities])
  : setTimeout(wait, 50);
wait();
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--min-accuracy", type=float, default=0.90)
    ap.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--screenshot", default=os.path.join(WEB, "..", "target", "web-demo.png"))
    ap.add_argument("--json", default=os.path.join(WEB, "..", "target", "web-demo.json"))
    args = ap.parse_args()

    if not os.path.exists(os.path.join(WEB, "pkg", "wgrad_web_bg.wasm")):
        fail("web/pkg is missing: run web/build.sh first")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    browser = next((b for b in (os.environ.get("CHROME"), shutil.which("chromium"),
                                shutil.which("chromium-browser"), shutil.which("google-chrome"))
                    if b), None)
    if not driver or not browser:
        fail("needs chromium and chromedriver (Debian: apt-get install chromium chromium-driver)")

    port = free_port()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", port), functools.partial(Quiet, directory=WEB))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dport = free_port()
    proc = subprocess.Popen([driver, f"--port={dport}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{dport}"
    session = None
    try:
        for _ in range(100):
            try:
                if call("GET", f"{base}/status", timeout=2)["value"]["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu",
                     "--window-size=1200,900", "--hide-scrollbars"]}}}}
        session = call("POST", f"{base}/session", caps)["value"]["sessionId"]
        s = f"{base}/session/{session}"
        call("POST", f"{s}/timeouts", {"script": int(args.timeout * 1000)})
        url = f"http://127.0.0.1:{port}/index.html?epochs={args.epochs}&device={args.device}"
        t0 = time.time()
        call("POST", f"{s}/url", {"url": url})
        seen = 0
        while True:
            st = call("POST", f"{s}/execute/sync",
                      {"script": "return window.wgradDemo ? JSON.stringify(window.wgradDemo) : null",
                       "args": []})["value"]
            st = json.loads(st) if st else None
            if st:
                for h in st["history"][seen:]:
                    print(f"epoch {h['epoch']:3d}: loss {h['loss']:.4f}, "
                          f"test accuracy {100 * h['testAccuracy']:.2f}%", flush=True)
                seen = len(st["history"])
                if st["state"] == "error":
                    fail(f"the page reported: {st['error']}")
                if st["state"] == "done":
                    break
            if time.time() - t0 > args.timeout:
                fail(f"training did not finish within {args.timeout:.0f} s")
            time.sleep(0.5)
        wall = time.time() - t0
        acc = st["testAccuracy"]
        ms = sorted(st["msPerEpoch"])
        median = ms[len(ms) // 2]
        print(f"device: {st['adapter']}")
        print(f"{args.epochs} epochs in {wall:.1f} s; median {median:.0f} ms per epoch; "
              f"first epoch reached after {st['firstEpochMs'] / 1000:.2f} s; "
              f"test accuracy {100 * acc:.2f}%")
        if acc < args.min_accuracy:
            fail(f"test accuracy {100 * acc:.2f}% is below {100 * args.min_accuracy:.0f}%")
        answers = []
        for digit, strokes in DIGITS:
            pred, probs = call("POST", f"{s}/execute/async",
                               {"script": DRAW, "args": [strokes]})["value"]
            if not isinstance(pred, int) or not 0 <= pred <= 9:
                fail(f"the classifier gave {pred!r} for a drawn {digit}")
            if len(probs) != 10 or abs(sum(probs) - 1) > 1e-3:
                fail(f"the probabilities for a drawn {digit} are {probs}")
            print(f"drew a {digit}: the model read {pred} ({100 * max(probs):.1f}%)")
            answers.append({"drawn": digit, "read": pred, "probability": max(probs)})
        shot = call("GET", f"{s}/screenshot")["value"]
        os.makedirs(os.path.dirname(os.path.abspath(args.screenshot)), exist_ok=True)
        with open(args.screenshot, "wb") as f:
            f.write(base64.b64decode(shot))
        print(f"wrote {os.path.abspath(args.screenshot)}")
        summary = {"adapter": st["adapter"], "device": args.device, "epochs": args.epochs,
                   "test_accuracy": acc, "ms_per_epoch": st["msPerEpoch"],
                   "median_ms_per_epoch": median, "first_epoch_s": st["firstEpochMs"] / 1000,
                   "wall_s": wall, "drawn": answers}
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    finally:
        if session:
            try:
                call("DELETE", f"{base}/session/{session}", timeout=20)
            except SystemExit:
                pass
        proc.terminate()
        server.shutdown()
    print("web/e2e.py: ok")


if __name__ == "__main__":
    main()
