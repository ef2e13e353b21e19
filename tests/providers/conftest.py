"""Fixtures of the provider tests: a real moto server on 127.0.0.1 for the AWS provider.

The server is a separate process (``python -m moto.server``) listening on a
free loopback port; the tests reach it over HTTP with boto3, exactly as they
would reach AWS. Fake credentials and the region are set in the environment
for each test and restored after it; every request is checked to go to
127.0.0.1, so no test can reach real AWS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dockerparallel._spec import free_port

MOTO_HOST = "127.0.0.1"
REGION = "us-east-1"
#: The fake secret; tests check that it never shows in a repr, log line or error.
FAKE_SECRET = "testing-secret-key-never-shown"
#: moto moves an ECS task one state past RUNNING each time it is described
#: (RUNNING -> DEACTIVATING -> ... -> STOPPED); this keeps tasks RUNNING until
#: stop_task, as real Fargate tasks stay.
KEEP_RUNNING = {"progression": "manual", "times": 1_000_000_000}
_PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                  "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                  "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN")

_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def moto_post(url: str, path: str, payload: dict[str, Any] | None = None) -> None:
    """POST JSON to the moto server's control API (``/moto-api/...``)."""
    data = json.dumps(payload or {}).encode()
    request = urllib.request.Request(url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    with _no_proxy.open(request, timeout=10):
        pass


def set_task_transition(url: str, transition: dict[str, Any]) -> None:
    """Set how moto moves ECS tasks between states (see moto's "state transitions" docs)."""
    moto_post(url, "/moto-api/state-manager/set-transition",
              {"model_name": "ecs::task", "transition": transition})


def _wait_until_answers(process: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}:\n{log.read_text()[-2000:]}")
        try:
            with _no_proxy.open(url + "/moto-api/", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"moto server did not answer on {url} within {timeout:g} s:\n{log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a moto server process on 127.0.0.1, for one test module.

    Module scope: the process ends with the module, so tests of other modules
    that check for leftover child processes do not see it.
    """
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    pytest.importorskip("boto3", reason="boto3 is not installed (pip install 'dockerparallel[aws]')")
    log = tmp_path_factory.mktemp("moto") / "server.log"
    port = free_port(MOTO_HOST)
    url = f"http://{MOTO_HOST}:{port}"
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARIABLES}
    env["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"  # AmazonECSTaskExecutionRolePolicy exists, as on AWS
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", MOTO_HOST, "-p", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_until_answers(process, url, log)
        set_task_transition(url, KEEP_RUNNING)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def aws_env(moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Fake credentials, region and a private state store (restored after the test); returns the moto URL."""
    for name in (*_PROXY_VARIABLES, *_AWS_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask 169.254.169.254 for credentials
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", f"{MOTO_HOST},localhost")
    monkeypatch.setenv("DOCKERPARALLEL_STATE", str(tmp_path / "state.sqlite3"))  # not the user's store
    return moto_server


def _only_loopback(request: Any, **_: Any) -> None:
    host = urllib.parse.urlsplit(request.url).hostname
    assert host == MOTO_HOST, f"a test request left the loopback interface: {request.url}"


def loopback_session() -> Any:
    """A boto3 session whose every request is checked to go to 127.0.0.1."""
    import boto3

    session = boto3.Session()
    session.events.register("before-send", _only_loopback)
    return session


@pytest.fixture
def ecs_provider(aws_env: str) -> Callable[..., Any]:
    """Factory of ECSFargateProvider objects talking to the moto server (fast retries)."""
    from dockerparallel.providers.ecs import ECSFargateProvider

    def make(**options: Any) -> ECSFargateProvider:
        options.setdefault("region", REGION)
        options.setdefault("retry_delay", 0.01)
        return ECSFargateProvider(endpoint_url=aws_env, session=loopback_session(), **options)

    return make


@pytest.fixture
def moto_transition(moto_server: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Set moto's ECS task transition for one test; tasks stay RUNNING again afterwards."""
    yield lambda transition: set_task_transition(moto_server, transition)
    set_task_transition(moto_server, KEEP_RUNNING)
