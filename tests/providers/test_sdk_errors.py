"""SDK errors reach the user translated, on every public path of the ECS and Docker providers.

ECS: a real moto server (conftest.py) and real botocore errors. A
``before-send`` hook registered on the provider's own client answers one
operation with an AWS error response (HTTP 400 and a JSON body, as AWS
sends it); botocore parses it into its ``ClientError`` exactly as it would
one from AWS. Nothing of the provider is mocked.

Docker: an engine address that is a unix socket path that does not exist,
and, where an engine runs, an image that does not exist.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from dockerparallel import DockerContainer, DockerHardware, ProviderError, ProviderThrottled
from dockerparallel._spec import free_port
from dockerparallel.container import ENV_SERVER_PORT
from dockerparallel.provider import ClusterView

from .conftest import FAKE_SECRET, MOTO_HOST, REGION, loopback_session
from .docker_fixtures import docker_client  # noqa: F401 - the fixture (skips, or fails when Docker is required)

IMAGE = "ghcr.io/dask/dask:latest"


@dataclass
class View:
    """The smallest :class:`ClusterView`: what a provider may read of a cluster."""

    name: str = field(default_factory=lambda: f"dptest-{uuid.uuid4().hex[:8]}")
    verbose: int = 0
    worker_container: DockerContainer = field(default_factory=lambda: DockerContainer(
        IMAGE, name="worker", command=["dask", "worker"], max_workers_per_container=2))
    server_container: DockerContainer = field(default_factory=lambda: DockerContainer(
        IMAGE, name="server", command=["dask", "scheduler"], environment={ENV_SERVER_PORT: "8786"}))


def test_the_view_is_a_cluster_view() -> None:
    assert isinstance(View(), ClusterView)


def assert_names(error: BaseException, provider: str, method: str) -> None:
    """The error names ``provider.method`` and shows no secret."""
    text = str(error)
    assert text.startswith(f"{provider}.{method}: "), text
    assert FAKE_SECRET not in text and FAKE_SECRET not in repr(error.args)


# -- ECS on moto ---------------------------------------------------------------------------------------------------


class _Body:
    """A raw HTTP body as botocore reads it."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def aws_refuses(provider: Any, operation: str, code: str, message: str, times: int | None = None,
                status: int = 400) -> list[str]:
    """Make AWS answer the ECS ``operation`` calls of ``provider`` (the first ``times`` ones) with the error ``code``.

    The answer is an HTTP response, parsed by botocore: the provider gets the
    very ``ClientError`` that AWS would cause. Returns the list of refused
    request URLs (one per refused call).
    """
    from botocore.awsrequest import AWSResponse

    refused: list[str] = []

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if times is not None and len(refused) >= times:
            return None  # the call reaches moto
        refused.append(request.url)
        body = json.dumps({"__type": code, "message": message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": uuid.uuid4().hex}
        return AWSResponse(request.url, status, headers, _Body(body))

    provider.client("ecs").meta.events.register(f"before-send.ecs.{operation}", answer)
    return refused


DENIED = "User: arn:aws:iam::123456789012:user/dev is not authorized to perform: ecs:{}"


@pytest.fixture
def ecs(ecs_provider: Callable[..., Any]) -> Iterator[Callable[..., tuple[Any, View]]]:
    """Factory of ``(provider, view)``: initialized, with a server task and one worker task running on moto."""
    made: list[View] = []

    def make(**options: Any) -> tuple[Any, View]:
        provider, view = ecs_provider(**options), View()
        made.append(view)
        provider.initialize_cloud_provider(view)
        provider.run_docker_server(view, view.server_container, DockerHardware())
        provider.add_managed_worker_handles(
            provider.run_docker_worker_containers(view, view.worker_container, DockerHardware(), 1))
        return provider, view

    yield make
    for view in made:
        try:
            ecs_provider().cleanup_docker_cluster(view, deep=True)
        except ProviderError:
            pass


def _handles(provider: Any) -> list[str]:
    return sorted(set(provider.get_managed_worker_handles()))


#: public method -> (the ECS operation refused, how to call the method).
ECS_PATHS: dict[str, tuple[str, Callable[[Any, View], Any]]] = {
    "initialize_cloud_provider": ("DescribeClusters", lambda p, v: p.initialize_cloud_provider(v)),
    "run_docker_server": ("RunTask", lambda p, v: p.run_docker_server(v, v.server_container, DockerHardware())),
    "stop_docker_server": ("DescribeTasks", lambda p, v: p.stop_docker_server(v)),
    "get_server_status": ("DescribeTasks", lambda p, v: p.get_server_status(v)),
    "get_docker_server_ip": ("DescribeTasks", lambda p, v: p.get_docker_server_ip(v)),
    "docker_cluster_exists": ("ListTasks", lambda p, v: p.docker_cluster_exists(v)),
    "reconnect_docker_cluster": ("ListTasks", lambda p, v: p.reconnect_docker_cluster(v)),
    "cleanup_docker_cluster": ("ListTasks", lambda p, v: p.cleanup_docker_cluster(v, deep=True)),
    "run_docker_worker_containers": ("RunTask", lambda p, v: p.run_docker_worker_containers(
        v, v.worker_container, DockerHardware(), 3)),
    "get_docker_worker_status": ("DescribeTasks", lambda p, v: p.get_docker_worker_status(v, _handles(p))),
    "kill_docker_worker_containers": ("DescribeTasks", lambda p, v: p.kill_docker_worker_containers(
        v, _handles(p))),
}


@pytest.mark.moto
def test_access_denied_on_the_server_path_is_a_provider_error(ecs: Callable[..., tuple[Any, View]]) -> None:
    provider, view = ecs()
    provider.stop_docker_server(view)
    refused = aws_refuses(provider, "RunTask", "AccessDeniedException", DENIED.format("RunTask"))
    with pytest.raises(ProviderError) as caught:
        provider.run_docker_server(view, view.server_container, DockerHardware())
    assert len(refused) == 1  # access denied is not worth a retry
    assert_names(caught.value, "ECSFargateProvider", "run_docker_server")
    assert f"AccessDeniedException: {DENIED.format('RunTask')}" in str(caught.value)
    assert all(u.startswith(f"http://{MOTO_HOST}:") for u in refused)


@pytest.mark.moto
@pytest.mark.parametrize("method", sorted(ECS_PATHS))
def test_access_denied_on_every_public_path_names_the_method(ecs: Callable[..., tuple[Any, View]],
                                                             method: str) -> None:
    provider, view = ecs()
    operation, call = ECS_PATHS[method]
    refused = aws_refuses(provider, operation, "AccessDeniedException", DENIED.format(operation))
    with pytest.raises(ProviderError) as caught:
        call(provider, view)
    assert refused, f"{method} never called {operation}"
    assert_names(caught.value, "ECSFargateProvider", method)
    assert f"AccessDeniedException: {DENIED.format(operation)}" in str(caught.value)


@pytest.mark.moto
def test_throttling_that_does_not_end_on_the_server_path_is_provider_throttled(
        ecs: Callable[..., tuple[Any, View]]) -> None:
    provider, view = ecs(max_attempts=3)
    refused = aws_refuses(provider, "RunTask", "ThrottlingException", "Rate exceeded")
    with pytest.raises(ProviderThrottled) as caught:
        provider.run_docker_server(view, view.server_container, DockerHardware())
    assert len(refused) == 3  # retried with backoff, then given up
    assert str(caught.value).startswith("ECSFargateProvider.run_docker_server: ")
    assert "ThrottlingException" in str(caught.value) and "3 time" in str(caught.value)


@pytest.mark.moto
def test_throttling_on_a_status_path_is_provider_throttled(ecs: Callable[..., tuple[Any, View]]) -> None:
    provider, view = ecs(max_attempts=2)
    aws_refuses(provider, "DescribeTasks", "ThrottlingException", "Rate exceeded")
    with pytest.raises(ProviderThrottled, match=r"^ECSFargateProvider\.get_server_status: .*ecs\.describe_tasks"):
        provider.get_server_status(view)


@pytest.mark.moto
def test_a_passing_throttle_is_retried_and_succeeds(ecs: Callable[..., tuple[Any, View]]) -> None:
    provider, view = ecs(max_attempts=3)
    refused = aws_refuses(provider, "DescribeTasks", "ThrottlingException", "Rate exceeded", times=2)
    assert provider.get_server_status(view) == "running"
    assert len(refused) == 2


@pytest.mark.moto
def test_an_unreachable_endpoint_is_a_provider_error_naming_the_method(aws_env: str) -> None:
    from dockerparallel.providers.ecs import ECSFargateProvider

    closed = f"http://{MOTO_HOST}:{free_port(MOTO_HOST)}"
    provider = ECSFargateProvider(region=REGION, endpoint_url=closed, session=loopback_session(),
                                  max_attempts=2, retry_delay=0.01)
    with pytest.raises(ProviderError) as caught:
        provider.initialize_cloud_provider(View())
    assert_names(caught.value, "ECSFargateProvider", "initialize_cloud_provider")
    assert "2 time" in str(caught.value)


@pytest.mark.moto
def test_missing_credentials_name_the_public_method(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerparallel.providers.ecs import ECSFargateProvider

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    provider = ECSFargateProvider(region=REGION, endpoint_url=aws_env, session=loopback_session())
    view = View()
    with pytest.raises(ProviderError, match="no AWS credentials found.*AWS_ACCESS_KEY_ID") as caught:
        provider.run_docker_server(view, view.server_container, DockerHardware())
    assert_names(caught.value, "ECSFargateProvider", "run_docker_server")


@pytest.mark.moto
def test_refused_credentials_never_show_the_secret(ecs: Callable[..., tuple[Any, View]]) -> None:
    provider, view = ecs()
    aws_refuses(provider, "ListTasks", "UnrecognizedClientException",
                f"The security token included in the request is invalid: {FAKE_SECRET}")
    with pytest.raises(ProviderError, match="AWS credentials missing or refused") as caught:
        provider.docker_cluster_exists(view)
    assert_names(caught.value, "ECSFargateProvider", "docker_cluster_exists")


@pytest.mark.moto
def test_missing_region_names_the_client_method(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dockerparallel.providers.ecs import ECSFargateProvider

    monkeypatch.delenv("AWS_DEFAULT_REGION")
    provider = ECSFargateProvider(endpoint_url=aws_env, session=loopback_session())
    with pytest.raises(ProviderError, match="no AWS region") as caught:
        provider.client("ecs")
    assert_names(caught.value, "ECSFargateProvider", "client")
    with pytest.raises(ProviderError, match="no AWS region") as caught:
        provider.initialize_cloud_provider(View())
    assert_names(caught.value, "ECSFargateProvider", "initialize_cloud_provider")


@pytest.mark.moto
def test_an_already_stopped_task_is_still_success(ecs: Callable[..., tuple[Any, View]]) -> None:
    provider, view = ecs()
    handles = _handles(provider)
    aws_refuses(provider, "StopTask", "InvalidParameterException", "The referenced task was not found.")
    assert provider.kill_docker_worker_containers(view, handles) == [True]


# -- Docker ---------------------------------------------------------------------------------------------------------

#: public method -> how to call it on a provider whose engine is gone.
DOCKER_PATHS: dict[str, Callable[[Any, View], Any]] = {
    "initialize_cloud_provider": lambda p, v: p.initialize_cloud_provider(v),
    "run_docker_server": lambda p, v: p.run_docker_server(v, v.server_container, DockerHardware()),
    "stop_docker_server": lambda p, v: p.stop_docker_server(v),
    "get_server_status": lambda p, v: p.get_server_status(v),
    "get_docker_server_ip": lambda p, v: p.get_docker_server_ip(v),
    "docker_cluster_exists": lambda p, v: p.docker_cluster_exists(v),
    "reconnect_docker_cluster": lambda p, v: p.reconnect_docker_cluster(v),
    "cleanup_docker_cluster": lambda p, v: p.cleanup_docker_cluster(v, deep=True),
    "run_docker_worker_containers": lambda p, v: p.run_docker_worker_containers(
        v, v.worker_container, DockerHardware(), 2),
    "get_docker_worker_status": lambda p, v: p.get_docker_worker_status(v, ["0" * 64]),
    "kill_docker_worker_containers": lambda p, v: p.kill_docker_worker_containers(v, ["0" * 64]),
}


@pytest.mark.parametrize("method", sorted(DOCKER_PATHS))
def test_an_unreachable_engine_is_a_provider_error_on_every_public_path(tmp_path: Path, method: str) -> None:
    pytest.importorskip("docker", reason="the docker SDK is not installed")
    from dockerparallel.providers.docker import DockerEngineUnavailable, DockerProvider

    socket_path = tmp_path / "no-docker.sock"
    provider = DockerProvider(base_url=f"unix://{socket_path}")
    provider._server_id = "0" * 64  # a server it started before the engine went away: status and address ask
    with pytest.raises(ProviderError) as caught:
        DOCKER_PATHS[method](provider, View())
    assert_names(caught.value, "DockerProvider", method)
    assert isinstance(caught.value, DockerEngineUnavailable)
    assert str(socket_path) in str(caught.value) and "scripts/install-docker.sh" in str(caught.value)


@pytest.mark.docker
def test_a_missing_image_is_a_provider_error_naming_the_method(docker_client: Any) -> None:
    from dockerparallel.providers.docker import DockerImageUnavailable, DockerProvider

    view = View(server_container=DockerContainer(f"dockerparallel-no-such-image:{uuid.uuid4().hex[:8]}"))
    with pytest.raises(DockerImageUnavailable) as caught:
        DockerProvider(pull=False).run_docker_server(view, view.server_container, DockerHardware())
    assert_names(caught.value, "DockerProvider", "run_docker_server")
    assert "is not on the Docker Engine" in str(caught.value)


@pytest.mark.docker
def test_an_engine_api_error_is_a_provider_error_naming_the_method(docker_client: Any) -> None:
    from dockerparallel.providers.docker import DockerProvider

    provider = DockerProvider(pull=False)
    provider._server_id = "0" * 64  # no such container on the engine
    with pytest.raises(ProviderError) as caught:
        provider.get_docker_server_ip(View())
    assert_names(caught.value, "DockerProvider", "get_docker_server_ip")
    assert "No such container" in str(caught.value) or "404" in str(caught.value)


# -- the two tables, without a server -------------------------------------------------------------------------------


class _Provider:
    """Stands for a provider in a message: only its class name is read."""


def test_every_botocore_kind_has_an_exception_and_a_message() -> None:
    ecs = pytest.importorskip("dockerparallel.providers.ecs")
    assert set(ecs.ERROR_TABLE.values()) | {"error"} == set(ecs.KINDS)


@pytest.mark.parametrize("code, status, kind, expected", [
    ("AccessDeniedException", 400, ProviderError, "_Provider.m: AccessDeniedException: no (RunTask)"),
    ("ThrottlingException", 400, ProviderThrottled, "_Provider.m: AWS throttled RunTask 1 time(s) in a row"),
    ("SomethingNew", 503, ProviderError, "_Provider.m: RunTask failed 1 time(s): SomethingNew: no"),
    ("ExpiredToken", 400, ProviderError, "_Provider.m: AWS credentials missing or refused (ExpiredToken)"),
])
def test_a_client_error_becomes_what_the_table_says(code: str, status: int, kind: type[Exception],
                                                     expected: str) -> None:
    from botocore.exceptions import ClientError

    from dockerparallel.providers.ecs import translate

    error = ClientError({"Error": {"Code": code, "Message": "no"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                        "RunTask")
    translated = translate(_Provider(), "m", error)
    assert type(translated) is kind and str(translated).startswith(expected), str(translated)


def test_values_aws_or_botocore_quote_are_taken_out() -> None:
    from botocore.exceptions import ClientError, ParamValidationError

    from dockerparallel.providers.ecs import translate

    quoted = ClientError({"Error": {"Code": "ValidationException", "Message": (
        f"1 validation error detected: Value 'DB_PASSWORD=hunter2-{FAKE_SECRET}' at 'overrides.environment' "
        "failed to satisfy constraint")}}, "RunTask")
    text = str(translate(_Provider(), "m", quoted))
    assert "hunter2" not in text and "Value '***' at 'overrides.environment'" in text
    invalid = ParamValidationError(report=f"Invalid type for parameter SecretString, value: {FAKE_SECRET}, type: x")
    text = str(translate(_Provider(), "m", invalid))
    assert FAKE_SECRET not in text and "SecretString" in text
    echoed = ClientError({"Error": {"Code": "AccessDenied", "Message": f"key {FAKE_SECRET} refused"}}, "GetRole")
    assert FAKE_SECRET not in str(translate(_Provider(), "m", echoed, hide=[FAKE_SECRET]))


def test_the_map_translates_once_in_the_outermost_method() -> None:
    from botocore.exceptions import ClientError

    from dockerparallel.providers.ecs import botocore_errors

    with pytest.raises(ProviderError, match=r"^_Provider\.outer: AccessDenied: no"):
        with botocore_errors(_Provider(), "outer"):
            with botocore_errors(_Provider(), "inner"):
                raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetRole")
    with pytest.raises(KeyError):  # not an SDK error: unchanged
        with botocore_errors(_Provider(), "outer"):
            raise KeyError("x")


def test_docker_sdk_errors_become_what_the_table_says() -> None:
    docker = pytest.importorskip("docker")
    import requests

    from dockerparallel.providers._docker_errors import translate
    from dockerparallel.providers.docker import DockerEngineUnavailable, DockerImageUnavailable

    pem = "-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----"
    cases = [
        (requests.exceptions.ConnectionError("refused"), DockerEngineUnavailable, "no Docker Engine is reachable"),
        (ConnectionRefusedError("refused"), DockerEngineUnavailable, "unix:///nowhere"),
        (docker.errors.ImageNotFound("no image x"), DockerImageUnavailable, "build or load it first"),
        (docker.errors.NotFound(f"no such container ({pem})"), ProviderError, "has no such object"),
        (docker.errors.APIError("conflict"), ProviderError, "the Docker Engine refused: conflict"),
        (docker.errors.DockerException("odd"), ProviderError, "docker SDK error: odd"),
    ]
    for error, kind, words in cases:
        translated = translate(_Provider(), "m", error, "unix:///nowhere")
        assert type(translated) is kind and words in str(translated), str(translated)
        assert str(translated).startswith("_Provider.m: ") and "abc" not in str(translated)
    assert translate(_Provider(), "m", KeyError("x"), None) is None
