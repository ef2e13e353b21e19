"""DockerContainer and DockerHardware: plain data, copies and the environment they write."""

from __future__ import annotations

import dataclasses

import pytest

from dockerparallel import DockerContainer, DockerHardware, ServerAddress
from dockerparallel.container import ENV_SERVER_IP, ENV_SERVER_PORT, ENV_WORKER_NUMBER


def test_hardware_defaults_and_cores() -> None:
    hardware = DockerHardware()
    assert (hardware.cpu, hardware.memory, hardware.id) == (1024, 2048, None)
    assert DockerHardware(cpu=512).cores == 0.5


def test_hardware_accepts_integral_floats_as_ints() -> None:
    hardware = DockerHardware(cpu=2048.0, memory=4096.0, id="m5.large")
    assert hardware.cpu == 2048 and type(hardware.cpu) is int
    assert hardware.memory == 4096 and type(hardware.memory) is int
    assert hardware.id == "m5.large"


def test_hardware_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DockerHardware().cpu = 1  # type: ignore[misc]


def test_container_normalises_command_and_copies_environment() -> None:
    environment = {"A": "1"}
    container = DockerContainer("img", command=["run", "it"], environment=environment)
    environment["B"] = "2"
    assert container.command == ("run", "it")
    assert container.environment == {"A": "1"}
    assert container.max_workers_per_container == 1


def test_container_repr_hides_environment_values() -> None:
    container = DockerContainer("img", name="worker", command=["w"], environment={"TOKEN": "s3cr3t"})
    text = repr(container)
    assert "s3cr3t" not in text
    assert "TOKEN" in text and "'img'" in text and "['w']" in text


def test_replace_and_with_environment_return_new_objects() -> None:
    container = DockerContainer("img", environment={"A": "1"})
    other = container.with_environment(B="2").replace(image="img2")
    assert other.environment == {"A": "1", "B": "2"} and other.image == "img2"
    assert container.environment == {"A": "1"} and container.image == "img"


def test_replace_validates_the_change() -> None:
    with pytest.raises(ValueError, match="max_workers_per_container"):
        DockerContainer("img").replace(max_workers_per_container=0)


def test_generic_container_has_no_server_container() -> None:
    with pytest.raises(NotImplementedError, match="server_container="):
        DockerContainer("img").server_container()


def test_for_server_writes_the_private_address() -> None:
    address = ServerAddress("203.0.113.1", 9000, "10.0.0.5", 8786)
    environment = DockerContainer("img").for_server(address).environment
    assert environment[ENV_SERVER_IP] == "10.0.0.5"
    assert environment[ENV_SERVER_PORT] == "8786"


def test_for_workers_writes_the_number() -> None:
    container = DockerContainer("img", max_workers_per_container=4)
    assert container.for_workers(3).environment[ENV_WORKER_NUMBER] == "3"
    assert ENV_WORKER_NUMBER not in container.environment


@pytest.mark.parametrize("workers", [0, 5, 1.5, True])
def test_for_workers_rejects_numbers_the_container_cannot_hold(workers: object) -> None:
    with pytest.raises((TypeError, ValueError), match="workers"):
        DockerContainer("img", max_workers_per_container=4).for_workers(workers)  # type: ignore[arg-type]


def test_server_address_coerce() -> None:
    address = ServerAddress.coerce({"private_ip": "10.0.0.1", "private_port": "8786"})
    assert address == ServerAddress(None, None, "10.0.0.1", 8786)
    assert (address.client_ip, address.client_port) == ("10.0.0.1", 8786)
    public = ServerAddress("1.2.3.4", 80, "10.0.0.1", 8786)
    assert ServerAddress.coerce(public) is public
    assert (public.client_ip, public.client_port) == ("1.2.3.4", 80)
    with pytest.raises(TypeError):
        ServerAddress.coerce("10.0.0.1:8786")  # type: ignore[arg-type]


def test_command_may_be_any_iterable_of_strings() -> None:
    assert DockerContainer("img", command=(a for a in ["run", "it"])).command == ("run", "it")
