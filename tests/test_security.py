"""Security: TLS with per-cluster certificates, no secret in any output, a private state file.

* A real local cluster with TLS computes for a client holding its certificates and
  refuses every other client; the certificates reach the processes through their environment.
* TLS is on by default for every provider except ``local``, where it is an option.
* With fake AWS credentials in the environment, a password in a container's environment
  and the clusters' TLS private keys, full lifecycles on the fake cloud, on local
  processes with TLS, on ECS (a moto server) and through the CLI show none of them in a
  log line (the ``dockerparallel`` loggers at DEBUG), a ``repr``, an exception or the
  CLI's output.
* The state file is created with mode 0600 in a directory of mode 0700.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import stat
import tempfile
import traceback
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import pytest
from distributed import Client, Security
from distributed.comm.core import CommClosedError

from dockerparallel import DockerCluster, ProviderError
from dockerparallel._spec import free_ports
from dockerparallel.backends.dask import TLS_ENVIRONMENT, DaskWorkerContainer, security_to_dict
from dockerparallel.providers import provider_class, registered_providers
from dockerparallel.providers.local import LocalProcessProvider, labelled_processes
from dockerparallel.state import StateStore
from dockerparallel.testing import FakeCloudProvider
from tests.local_fixtures import dask_container, run_cli, store, wait_for  # noqa: F401
from tests.providers.conftest import FAKE_SECRET, aws_env, ecs_provider, moto_server  # noqa: F401

#: Fake credentials, each distinctive enough that finding it anywhere is a leak.
AWS_SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIAFAKEKEYQ7Z3X9W1V",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-key-xyzzy-4f2a9c81",
    "AWS_SESSION_TOKEN": "fake-session-token-plugh-8e1b7d30",
}
PASSWORD = "fake-password-frotz-52c6e0"
REQUIRE_ENCRYPTION = "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tls_container(**options: Any) -> DaskWorkerContainer:
    """A Dask container on 127.0.0.1 with free ports; its environment holds a password."""
    return DaskWorkerContainer(host="127.0.0.1", scheduler_port=(ports := free_ports(2))[0], dashboard_port=ports[1],
                               environment={"DB_PASSWORD": PASSWORD}, **options)


def process_environment(handle: str) -> dict[str, str]:
    return psutil.Process(int(handle.split("-")[1])).environ()


# -- a real local cluster with TLS ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerCluster]:
    """A running local cluster with TLS and 2 workers (one module: starting one takes seconds)."""
    tls_store = StateStore(tmp_path_factory.mktemp("tls") / "state.sqlite3")
    cluster = DockerCluster(LocalProcessProvider(tls_store, grace_period=3.0),
                            tls_container(max_workers_per_container=2), name=unique_name("tls"), security=True,
                            worker_number=2, state=tls_store)
    try:
        cluster.start_cluster(timeout=60)
        cluster.wait_for_workers(timeout=60)
        yield cluster
    finally:
        cluster.stop_cluster()
        cluster.cleanup(deep=True)


def test_a_client_with_the_cluster_certificates_computes(tls_cluster: DockerCluster) -> None:
    assert tls_cluster.scheduler_address.startswith("tls://127.0.0.1:")
    with tls_cluster.get_client(timeout="30s", set_as_default=False) as client:
        client.wait_for_workers(2, timeout=60)
        assert client.submit(sum, range(10)).result() == 45


class TrustingSecurity(Security):
    """A client's TLS settings that trust the cluster's CA but offer ``client`` (or no) certificate.

    The client accepts the scheduler, so the handshake gets as far as the
    scheduler's check of the client, and any refusal is the scheduler's.
    """

    def __init__(self, cluster: DockerCluster, client: Security | None = None) -> None:
        super().__init__(require_encryption=True)
        self._cluster_ca = cluster.security.tls_ca_file
        self._client = client

    def get_connection_args(self, role: str) -> dict[str, Any]:
        args = super().get_connection_args(role)
        ca = self._cluster_ca
        context = ssl.create_default_context(**({"cadata": ca} if "\n" in ca else {"cafile": ca}))
        context.check_hostname = False  # the certificates name no host, as in Dask's own TLS contexts
        if self._client is not None:  # a key pair that the cluster's CA did not sign
            cert, key = self._client.tls_client_cert, self._client.tls_client_key
            with tempfile.TemporaryDirectory() as folder:
                cert_path, key_path = Path(folder, "client.crt"), Path(folder, "client.key")
                cert_path.write_text(cert)
                key_path.write_text(key)
                context.load_cert_chain(cert_path, key_path)
        args["ssl_context"] = context
        return args


def error_chain(error: BaseException | None) -> list[BaseException]:
    chain = []
    while error is not None and error not in chain:
        chain.append(error)
        error = error.__cause__ or error.__context__
    return chain


def scheduler_refusals(cluster: DockerCluster) -> list[str]:
    """The scheduler's log lines of the TLS handshakes it refused."""
    logs = sorted((cluster.provider.store.log_dir / cluster.name).glob("server-*.log"))  # type: ignore[attr-defined]
    return [line for log in logs for line in log.read_text(errors="replace").splitlines()
            if "TLS handshake failed with remote" in line]


#: Attempt -> why the scheduler refuses its TLS handshake (OpenSSL's reason, in the scheduler's log).
REFUSALS = {
    "plain tcp": "WRONG_VERSION_NUMBER",  # no TLS at all
    "tls without certificates": "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    "tls with other certificates": "CERTIFICATE_VERIFY_FAILED",  # the scheduler does not trust the client's CA
}


@pytest.mark.parametrize("attempt", sorted(REFUSALS))
def test_a_client_without_the_cluster_certificates_cannot_connect(tls_cluster: DockerCluster, attempt: str) -> None:
    address = tls_cluster.scheduler_address
    security: Security | None = {
        "plain tcp": None,
        "tls without certificates": TrustingSecurity(tls_cluster),
        "tls with other certificates": TrustingSecurity(tls_cluster, Security.temporary()),
    }[attempt]
    if security is None:
        address = address.replace("tls://", "tcp://")
    with pytest.raises(OSError) as excinfo:  # never the client's TypeError of a TLS address without a context
        Client(address, timeout="10s", set_as_default=False, security=security).close()
    chain = error_chain(excinfo.value)
    described = " <- ".join(f"{type(e).__name__}: {e}" for e in chain)
    # A connection was made, then the scheduler ended it: not refused by the OS, not rejected by the client ...
    assert any(isinstance(e, CommClosedError) for e in chain), described
    assert not any(isinstance(e, (ConnectionRefusedError, ssl.SSLCertVerificationError)) for e in chain), described
    port = re.search(r"local=\w+://[\d.]+:(\d+)", described)
    assert port, described
    # ... and the scheduler says why it refused this very connection (its client port).
    remote, reason = f"://127.0.0.1:{port.group(1)}'", REFUSALS[attempt]
    wait_for(lambda: any(remote in line and reason in line for line in scheduler_refusals(tls_cluster)), 30,
             f"the scheduler's log to refuse {remote} with {reason}")
    with tls_cluster.get_client(timeout="30s", set_as_default=False) as client:
        others = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.clients))
        assert set(others) <= {client.id, "fire-and-forget"}, "the scheduler accepted another client"


def test_the_scheduler_refuses_a_tls_handshake_without_a_client_certificate(tls_cluster: DockerCluster) -> None:
    host, port = tls_cluster.scheduler_address.removeprefix("tls://").rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # trust any server; offer no certificate of our own
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"\0" * 8)
                if not tls.recv(1):
                    raise ConnectionError("the scheduler closed the connection")


def test_the_certificates_reach_every_process_through_its_environment(tls_cluster: DockerCluster) -> None:
    found = labelled_processes(tls_cluster.name)
    assert sorted(role for role, _ in found.values()) == ["server", "worker"]
    for handle in found:
        environment = process_environment(handle)
        assert environment[REQUIRE_ENCRYPTION] == "True"
        for field, variable in TLS_ENVIRONMENT.items():
            assert environment[variable] == getattr(tls_cluster.security, field), variable


# -- defaults ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(registered_providers()))
def test_tls_is_on_by_default_for_every_provider_but_local(name: str) -> None:
    assert provider_class(name).tls_by_default is (name != "local")


def test_a_cloud_cluster_gets_its_own_certificates_by_default(store: StateStore) -> None:  # noqa: F811
    provider = FakeCloudProvider()
    cluster = DockerCluster(provider, DaskWorkerContainer(max_workers_per_container=2), worker_number=3,
                            name=unique_name("fake"), state=store)
    assert cluster.security is not None and cluster.scheduler_address.startswith("tls://")
    cluster.start_cluster(timeout=5)
    boxes = provider.cloud.live(cluster.name)
    assert sorted(box.role for box in boxes) == ["server", "worker", "worker"]
    for box in boxes:
        assert box.environment[REQUIRE_ENCRYPTION] == "True"
        for field, variable in TLS_ENVIRONMENT.items():
            assert box.environment[variable] == getattr(cluster.security, field)
    other = DockerCluster(FakeCloudProvider(), DaskWorkerContainer(), state=False)
    assert other.security is not None and other.security.tls_ca_file != cluster.security.tls_ca_file
    again = DockerCluster.reconnect(cluster.name, state=store)  # the certificates come back from the store
    assert again.security is not None and security_to_dict(again.security) == security_to_dict(cluster.security)


def test_local_processes_have_no_tls_by_default_and_it_is_an_option(store: StateStore,  # noqa: F811
                                                                     dask_container: DaskWorkerContainer) -> None:  # noqa: F811
    plain = DockerCluster(LocalProcessProvider(store), dask_container, state=False)
    assert plain.security is None and plain.worker_container.protocol == "tcp"
    assert not set(TLS_ENVIRONMENT.values()) & set(plain.worker_container.environment)
    assert not set(TLS_ENVIRONMENT.values()) & set(plain.server_container.environment)
    secure = DockerCluster(LocalProcessProvider(store), dask_container, state=False, security=True)
    assert secure.security is not None and secure.worker_container.protocol == "tls"
    assert "--protocol" in secure.server_container.command
    assert secure.server_container.command[secure.server_container.command.index("--protocol") + 1] == "tls"
    off = DockerCluster(FakeCloudProvider(), DaskWorkerContainer(), state=False, security=False)
    assert off.security is None and off.scheduler_address.startswith("tcp://")


# -- no secret in any output ------------------------------------------------------------------------------


class SecretLeak(AssertionError):
    """A secret showed in a log line, a repr, an exception or the CLI's output."""


class Exposure:
    """Everything the library showed during a test, and the secrets that must not be in it."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = list(secrets)
        self.texts: list[tuple[str, str]] = []

    def add_keys(self, security: Security | None) -> None:
        """The TLS private keys of ``security``, each base64 line of them on its own."""
        assert security is not None
        for field in ("tls_scheduler_key", "tls_worker_key", "tls_client_key"):
            pem = getattr(security, field)
            assert "PRIVATE KEY" in pem
            self.secrets += [line for line in pem.splitlines() if len(line) >= 32]

    def add(self, source: str, text: str) -> None:
        self.texts.append((source, text))

    def show(self, *objects: object) -> None:
        """``repr`` and ``str`` of each object."""
        for obj in objects:
            self.add(f"repr of {type(obj).__name__}", repr(obj))
            self.add(f"str of {type(obj).__name__}", str(obj))

    @contextmanager
    def raises(self, *errors: type[BaseException]) -> Iterator[None]:
        """Expect one of ``errors``; record its message, repr and traceback."""
        with pytest.raises(errors) as excinfo:
            yield
        self.show(excinfo.value)
        self.add(f"traceback of {type(excinfo.value).__name__}", "".join(traceback.format_exception(excinfo.value)))

    def check(self) -> None:
        assert self.texts and self.secrets
        for source, text in self.texts:
            for secret in [*self.secrets, "PRIVATE KEY"]:
                if secret in text:
                    at = text.index(secret)
                    raise SecretLeak(f"{source} shows a secret: ...{text[max(0, at - 150):at + 40]!r}...")


@pytest.fixture
def exposure(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[Exposure]:
    """Fake AWS credentials in the environment; every ``dockerparallel`` log line at DEBUG is checked at the end."""
    for variable, value in AWS_SECRETS.items():
        monkeypatch.setenv(variable, value)
    caplog.set_level(logging.DEBUG, logger="dockerparallel")
    seen = Exposure([*AWS_SECRETS.values(), PASSWORD])
    yield seen
    records = [r for phase in ("setup", "call") for r in caplog.get_records(phase)]  # type: ignore[arg-type]
    assert any(r.name.startswith("dockerparallel.") for r in records), "nothing was logged"
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    for record in records:  # the message with its arguments, and any traceback logged with it
        seen.add(f"log line of {record.name}", formatter.format(record))
    seen.check()


def run_lifecycle(cluster: DockerCluster, exposure: Exposure, numbers: tuple[int, ...] = (3, 1)) -> DockerCluster:
    """Start, scale, provoke errors, reconnect by name from the store and stop; show every object on the way."""
    assert cluster.store is not None
    exposure.add_keys(cluster.security)
    exposure.show(cluster, cluster.provider, cluster.worker_container, cluster.server_container,
                  cluster.worker_hardware, cluster.server_hardware, cluster.store, cluster.security)
    cluster.start_cluster(timeout=60)
    for number in numbers:
        cluster.set_worker_number(number)
        exposure.show(cluster.wait_for_workers(timeout=60))
    provider = cluster.provider
    exposure.show(cluster.configured_worker_container(), cluster.server_address(), cluster.scheduler_address,
                  provider.set_docker_worker_number(cluster, cluster.configured_worker_container(),
                                                    cluster.worker_hardware, numbers[-1], cluster.verbose),
                  *getattr(provider, "worker_ledger", []))
    with exposure.raises(ValueError):
        cluster.set_worker_number(-1)
    with exposure.raises(TypeError):
        cluster.set_worker_number("3")  # type: ignore[arg-type]
    with exposure.raises(ValueError):
        cluster.reconnect(orphans="maybe")
    with exposure.raises(TypeError):
        DockerCluster(provider, cluster.worker_container, security="yes", state=False)
    with exposure.raises(ValueError):
        DockerCluster.reconnect("no-such-cluster", state=cluster.store)
    again = DockerCluster.reconnect(cluster.name, state=cluster.store)
    exposure.show(again, again.last_reconnect, again.provider, again.security, again.get_worker_numbers(),
                  again.worker_container, cluster.store.load_cluster(cluster.name),
                  *cluster.store.list_clusters(), *cluster.store.resources(cluster.name))
    again.stop_cluster()
    again.cleanup(deep=True)
    exposure.show(again)
    return again


def test_no_secret_shows_on_the_fake_cloud(exposure: Exposure, store: StateStore) -> None:  # noqa: F811
    provider = FakeCloudProvider()  # a reconnect by name finds its cloud again (the cloud's id is recorded)
    cluster = DockerCluster(provider, DaskWorkerContainer(environment={"DB_PASSWORD": PASSWORD},
                                                          max_workers_per_container=2),
                            name=unique_name("fake"), verbose=2, state=store)
    provider.failure_rate = 1.0
    with exposure.raises(ProviderError):
        cluster.start_cluster(timeout=5)
        cluster.set_worker_number(4)
    provider.failure_rate = 0.0
    run_lifecycle(cluster, exposure, numbers=(5, 2))
    assert provider.cloud.live(cluster.name) == []


def test_no_secret_shows_on_local_processes_with_tls(exposure: Exposure, store: StateStore) -> None:  # noqa: F811
    cluster = DockerCluster(LocalProcessProvider(store, grace_period=3.0), tls_container(max_workers_per_container=2),
                            name=unique_name("local"), security=True, verbose=2, state=store)
    run_lifecycle(cluster, exposure, numbers=(3, 1))
    assert labelled_processes(cluster.name) == {}
    for log in store.log_dir.rglob("*.log"):  # what the scheduler and the workers printed
        exposure.add(f"process log {log.name}", log.read_text(errors="replace"))


@pytest.mark.moto
def test_no_secret_shows_on_ecs(exposure: Exposure, ecs_provider: Callable[..., Any],  # noqa: F811
                                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for variable, value in AWS_SECRETS.items():  # over the fixture's own fake credentials
        monkeypatch.setenv(variable, value)
    exposure.secrets.append(FAKE_SECRET)
    store = StateStore(tmp_path / "ecs.sqlite3")  # noqa: F811
    cluster = DockerCluster(ecs_provider(), DaskWorkerContainer(environment={"DB_PASSWORD": PASSWORD},
                                                                max_workers_per_container=2),
                            name=unique_name("dpsec"), verbose=2, state=store)
    assert cluster.security is not None  # TLS by default on ECS
    try:
        run_lifecycle(cluster, exposure, numbers=(3, 1))
    except BaseException:
        cluster.cleanup(deep=True)
        raise


def cli_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable, value in AWS_SECRETS.items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv("DB_PASSWORD", PASSWORD)


def check_cli_output(results: list[Any]) -> None:
    seen = Exposure([*AWS_SECRETS.values(), PASSWORD])
    for result in results:
        seen.add(f"dockerparallel {' '.join(result.args[3:])}", result.stdout + result.stderr)
    seen.check()


def test_no_secret_shows_in_the_cli_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cli_environment(monkeypatch)
    state, name = tmp_path / "cli" / "state.sqlite3", unique_name("cli")
    results = [run_cli(state, "-vv", "up", "--workers", "2", "--name", name)]
    try:
        results += [run_cli(state, "-vv", *args) for args in (["status", name], ["scale", name, "1", "--wait"],
                                                               ["list"])]
        results += [run_cli(state, "-vv", *args, check=False) for args in (["scale", name, "--", "-5"],
                                                                           ["status", "no-such-cluster"])]
        assert [r.returncode for r in results[-2:]] == [1, 1]
    finally:
        results.append(run_cli(state, "-vv", "down", name))
    assert any("DEBUG" in r.stderr for r in results), "-vv logged nothing"
    check_cli_output(results)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600 and stat.S_IMODE(state.parent.stat().st_mode) == 0o700


@pytest.mark.moto
def test_no_secret_shows_in_the_cli_output_on_ecs(aws_env: str, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
                                                  tmp_path: Path) -> None:
    cli_environment(monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env)  # the CLI's boto3 talks to the moto server
    state, name = tmp_path / "state.sqlite3", unique_name("dpcli")
    try:
        results = [run_cli(state, "-vv", "up", "--provider", "ecs", "--workers", "2", "--name", name,
                           "--timeout", "60")]
        results.append(run_cli(state, "-vv", "status", name))
    finally:
        results.append(run_cli(state, "-vv", "down", name))
    check_cli_output(results)


# -- the state file ------------------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_the_state_file_is_created_private_even_with_a_permissive_umask(tmp_path: Path,
                                                                       permissive_umask: None) -> None:
    path = tmp_path / "new" / "state.sqlite3"
    store = StateStore(path)  # noqa: F811
    store.save_cluster("a", "pkg:P", {"security": {"tls_worker_key": "secret"}})
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    with store._connect():  # a transaction is open: SQLite's -wal and -shm files exist
        side_files = [p for p in path.parent.iterdir() if p != path]
        assert side_files and all(mode(p) == 0o600 for p in side_files), [(p.name, oct(mode(p))) for p in side_files]


def test_an_existing_state_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    path.touch(mode=0o644)
    path.chmod(0o644)
    StateStore(path).list_clusters()
    assert mode(path) == 0o600


def test_the_default_state_file_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKERPARALLEL_STATE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    store = StateStore()  # noqa: F811
    store.list_clusters()
    assert store.path == tmp_path / "xdg" / "dockerparallel" / "state.sqlite3"
    assert mode(store.path) == 0o600 and mode(store.path.parent) == 0o700
