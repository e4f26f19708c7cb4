"""Deployments on a real Prefect server (127.0.0.1, temporary PREFECT_HOME): `prefect deploy` from prefect.yaml, a
process worker running a tiny elf-pipeline deployment with parameters, `elfdd serve` serving every flow, and each
deployment's run form in the Prefect UI as headless Chromium renders it."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, TINY_RUN

pytestmark = pytest.mark.slow  # a Prefect server and worker

BIN = Path(sys.executable).parent
FLOW_NAMES = [
    "elf-pipeline",
    "distill",
    "import-synthetic",
    "train-teacher",
    "extract-features",
    "train-students",
    "report",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `prefect server start` process and the environment that points commands at it."""

    def __init__(self, home: Path, ui: bool = False):
        port = _free_port()
        self.ui = f"http://127.0.0.1:{port}"
        self.api = f"{self.ui}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
            "DO_NOT_TRACK": "1",
            "ELFDD_ROOT": str(ROOT),
        }
        self.log = open(home / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [BIN / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.get("/health") is True:
                    return
            except OSError:
                time.sleep(1)
        self.stop()
        pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")

    def get(self, path: str):
        with urllib.request.urlopen(self.api + path, timeout=10) as response:
            return json.load(response)

    def post(self, path: str, body: dict):
        request = urllib.request.Request(
            self.api + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def prefect(self, *args: str, timeout: float = 300, ok: bool | None = True) -> str:
        done = subprocess.run(
            [BIN / "prefect", *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )
        assert ok is None or (done.returncode == 0) is ok, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    def start_run(self, deployment: str, params: dict) -> str:
        out = self.prefect("deployment", "run", deployment, "--params", json.dumps(params))
        return re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)

    def wait(self, flow_run: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.get(f"/flow_runs/{flow_run}")
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(2)
        pytest.fail(f"flow run {flow_run} did not finish in {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    served = Server(tmp_path_factory.mktemp("prefect-server"))
    yield served
    served.stop()


def _tiny_config(toy_npz: Path) -> dict:
    """The run config as a deployment parameter: a partial RunConfig, the rest defaults."""
    return {
        "precision": "fp32",
        "data": {"name": "npz", "path": str(toy_npz)},
        "distill": {"ipc": 2, "iterations": 4, "batch_real": 8},
        "teacher": {"epochs": 2, "checkpoint_epochs": [0, 2], "batch_size": 32},
        "students": {"archs": ["convnet"], "epochs": 2, "seeds": [0]},
    }


def test_prefect_yaml_deployment_runs_on_a_worker(server, toy_npz, tmp_path):
    server.prefect("work-pool", "create", "elfdd", "--type", "process")
    server.prefect("--no-prompt", "deploy", "--all")
    deployments = server.post("/deployments/filter", {})
    assert sorted(d["name"] for d in deployments) == sorted(FLOW_NAMES)
    schema = next(d for d in deployments if d["name"] == "elf-pipeline")["parameter_openapi_schema"]
    assert "RunConfig" in schema["definitions"] and "StudentsConfig" in schema["definitions"]  # the UI's form

    run_dir = tmp_path / "served"
    flow_run = server.start_run(
        "elf-pipeline/elf-pipeline", {"run_dir": str(run_dir), "config": _tiny_config(toy_npz)}
    )
    server.prefect("worker", "start", "--pool", "elfdd", "--run-once")
    state = server.wait(flow_run)
    assert state["state_type"] == "COMPLETED", state["state"]["message"]

    results = json.loads((run_dir / "results.json").read_text())
    assert results["config"]["students"]["epochs"] == 2 and len(results["runs"]) == 2
    assert {p.name for p in (run_dir / "stages").iterdir()} == {
        "distill.json",
        "teacher-teacher.json",
        "extract.json",
    }
    logs = server.post("/logs/filter", {"limit": 200})
    assert any(entry["name"] == "elfdd" and "distill dm" in entry["message"] for entry in logs)
    # the pipeline run's own Logs tab carries the stages' lines (logged inside its subflows)
    own = server.post("/logs/filter", {"limit": 200, "logs": {"flow_run_id": {"any_": [flow_run]}}})
    assert any("distill dm" in entry["message"] for entry in own)
    assert any("students: task 1 of" in entry["message"] for entry in own)
    # with a server set, the top flow run says where its page is
    assert any(
        e["message"].startswith("flow run ") and f"/flow-runs/flow-run/{flow_run}" in e["message"]
        for e in own
    )
    from elfdd.flows.artifacts import artifact_key

    keys = {a["key"] for a in server.post("/artifacts/filter", {})}
    kinds = ("distill", "teacher", "extract", "students", "summary")
    assert {artifact_key(kind, run_dir) for kind in kinds} <= keys  # keyed by this run directory


def test_elfdd_serve_runs_a_deployment(server, toy_npz, tmp_path):
    run_dir = tmp_path / "served"
    config = _tiny_config(toy_npz)
    serving = subprocess.Popen([BIN / "elfdd", "serve"], env=server.env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 180  # until serve has registered its seven deployments
        while sum(d["name"] == "served" for d in server.post("/deployments/filter", {})) < len(FLOW_NAMES):
            assert time.monotonic() < deadline and serving.poll() is None, (
                "elfdd serve registered no deployments"
            )
            time.sleep(1)
        flow_run = server.start_run("distill/served", {"run_dir": str(run_dir), "config": config})
        state = server.wait(flow_run)
        assert state["state_type"] == "COMPLETED", state["state"]["message"]
        assert (run_dir / "synthetic.pt").exists() and (run_dir / "stages" / "distill.json").exists()

        # A config the parameter schema refuses never becomes a flow run; one only the model's cross-field checks
        # refuse fails the run with the cause, before anything is written.
        bad = {"run_dir": str(tmp_path / "bad"), "config": {"seed": "x"}}
        refused = server.prefect("deployment", "run", "distill/served", "--params", json.dumps(bad), ok=False)
        assert "config.seed" in refused
        bad["config"] = {**config, "extract": {"teacher_epochs": [7]}}
        state = server.wait(server.start_run("distill/served", bad))
        assert state["state_type"] == "FAILED" and "teacher_epochs" in state["state"]["message"]
        assert not (tmp_path / "bad").exists()

        # Served beside what `prefect deploy` registered: neither replaces the other (names <flow>/served vs
        # <flow>/<flow>, the latter keeping its work pool).
        server.prefect(
            "work-pool", "create", "elfdd", "--type", "process", ok=None
        )  # made by the test above, or here
        server.prefect("--no-prompt", "deploy", "--all")
        named = [(d["name"], d["work_pool_name"]) for d in server.post("/deployments/filter", {})]
        assert sorted(named).count(("served", None)) == len(FLOW_NAMES)
        assert sorted(n for n, pool in named if pool == "elfdd") == sorted(FLOW_NAMES)
    finally:
        serving.terminate()
        serving.wait(30)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _rendered(url: str) -> str:
    """The DOM of ``url`` after the UI's scripts ran (headless Chromium, 30 s of virtual time)."""
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium (apt-get install chromium; .ci/run installs it)")
def test_every_run_form_shows_every_parameter_with_its_description(tmp_path, toy_npz):
    """The form a user fills in the Prefect UI to run a deployment (``/deployments/deployment/<id>/run``) shows
    each of the flow's parameters with the description its signature gives it."""
    ui = Server(tmp_path, ui=True)
    try:
        ui.prefect("work-pool", "create", "elfdd", "--type", "process")
        ui.prefect("--no-prompt", "deploy", "--all")
        deployments = ui.post("/deployments/filter", {})
        assert sorted(d["name"] for d in deployments) == sorted(FLOW_NAMES)
        for deployment in deployments:
            fields = deployment["parameter_openapi_schema"]["properties"]
            dom = _rendered(f"{ui.ui}/deployments/deployment/{deployment['id']}/run")
            for name, field in fields.items():
                assert field.get("description"), f"{deployment['name']}: parameter {name} has no description"
                assert field["description"] in dom, (
                    f"{deployment['name']}: {name}'s description is not on its form"
                )
            if deployment["name"] == "elf-pipeline":
                # The form shows `config` as a choice of RunConfig or None (None: the directory's config.yaml), and
                # once RunConfig is chosen, a form built from this schema: every field of every section carries
                # the description the form shows beside it.
                assert "RunConfig" in dom
                definitions = deployment["parameter_openapi_schema"]["definitions"]
                missing = [
                    f"{model}.{key}"
                    for model, schema in definitions.items()
                    for key, field in schema.get("properties", {}).items()
                    if not field.get("description")
                ]
                assert not missing, f"config fields without a description for the form: {missing}"
        # Two run directories reporting to this server: each has its own report artifact, and its page in the UI
        # shows that directory's report.
        artifacts = {}
        for name in ("first", "second"):
            run_dir = tmp_path / name
            command = [sys.executable, "-m", "elfdd.flows", "run", "--out", str(run_dir)]
            sets = ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, "students.archs=[convnet]"]
            done = subprocess.run(
                command + [a for s in sets for a in ("--set", s)],
                env=ui.env, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            from elfdd.flows.artifacts import artifact_key

            artifacts[name] = (artifact_key("report", run_dir), str(run_dir / "report.md"))
        assert artifacts["first"][0] != artifacts["second"][0]
        for key, report in artifacts.values():
            (latest,) = ui.post("/artifacts/filter", {"artifacts": {"key": {"any_": [key]}}, "limit": 1})
            dom = _rendered(f"{ui.ui}/artifacts/artifact/{latest['id']}")
            assert report in dom and "Provenance" in dom, f"{key}: the page does not show {report}"
    finally:
        ui.stop()
