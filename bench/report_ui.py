"""The report where users look: a real Prefect server, a run whose report flow publishes the `elfdd-report`
artifact to it, and headless Chromium (Debian's `chromium`) opening the artifact page as a user would.

    python bench/report_ui.py [--run runs/report_ui] [--config smoke] [--screenshot FILE]

Prints `images N loaded M` (every <img> on the artifact page and how many decoded) and exits 1 when the page shows
no image or any image fails to load. The run is kept, so a rerun only starts the server and the browser again.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from elfdd.flows.artifacts import artifact_key

ROOT = Path(__file__).resolve().parents[1]
SETS = ["students.archs=[convnet,mlp]", "students.epochs=2", "students.seeds=[0,1]"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float) -> bytes:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"error: {url} did not answer within {seconds:.0f} s") from None
            time.sleep(1)


def start_server(home: Path, port: int) -> subprocess.Popen:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # what the browser's UI calls
    }
    return subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def publish_report(run: Path, config: str, api: str) -> str:
    """Run the pipeline (kept stages are not recomputed) against the server; the id of its report artifact
    (``elfdd-report-<run directory>``)."""
    env = {**os.environ, "PREFECT_API_URL": api}
    command = [sys.executable, "-m", "elfdd.flows.cli", "run", "--config", config, "--out", str(run)]
    for item in SETS:
        command += ["--set", item]
    subprocess.run(command, env=env, check=True, cwd=ROOT)
    request = urllib.request.Request(
        f"{api}/artifacts/filter",
        data=json.dumps(
            {"artifacts": {"key": {"any_": [artifact_key("report", run)]}}, "sort": "CREATED_DESC"}
        ).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        artifacts = json.loads(response.read())
    if not artifacts:
        raise SystemExit(f"error: the server holds no {artifact_key('report', run)} artifact")
    return artifacts[0]["id"]


class Browser:
    """Headless Chromium driven over the DevTools protocol (websockets, which Prefect already depends on)."""

    def __init__(self, profile: Path):
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={profile}",
                "--window-size=1400,2400",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        targets = json.loads(wait_for(f"http://127.0.0.1:{self.port}/json/list", 60))
        page = next(t for t in targets if t["type"] == "page")
        from websockets.sync.client import connect

        self.socket = connect(page["webSocketDebuggerUrl"], max_size=2**26)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def close(self) -> None:
        self.socket.close()
        self.process.kill()


IMAGES = """Array.from(document.images).map(i => ({src: i.src.slice(0, 60), complete: i.complete,
  width: i.naturalWidth}))"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/report_ui")
    parser.add_argument("--config", default="smoke")
    parser.add_argument("--screenshot", default=None, help="write the artifact page as PNG here")
    parser.add_argument("--wait", type=float, default=30, help="seconds to let the page render its images")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="elfdd-report-ui-"))
    port = free_port()
    server = start_server(work / "prefect", port)
    browser = None
    try:
        api = f"http://127.0.0.1:{port}/api"
        wait_for(f"{api}/health", 120)
        artifact = publish_report(Path(args.run), args.config, api)
        url = f"http://127.0.0.1:{port}/artifacts/artifact/{artifact}"
        browser = Browser(work / "chromium")
        browser.call("Page.enable")
        browser.call("Page.navigate", url=url)
        deadline, images = time.monotonic() + args.wait, []
        while time.monotonic() < deadline:  # the UI renders the markdown after its API calls return
            time.sleep(2)
            images = browser.evaluate(IMAGES) or []
            if images and all(i["complete"] for i in images):
                break
        if args.screenshot:
            shot = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            Path(args.screenshot).write_bytes(base64.b64decode(shot["data"]))
        loaded = [i for i in images if i["complete"] and i["width"] > 0]
        print(f"# {url}")
        for image in images:
            print(f"# image {image['src']}... loaded {image['complete'] and image['width'] > 0}")
        print(f"images {len(images)} loaded {len(loaded)}")
        if not images or len(loaded) != len(images):
            raise SystemExit(1)
    finally:
        if browser is not None:
            browser.close()
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
