"""The ``dockerparallel`` namespace of dask.config, its shipped defaults and its typed getters."""

from __future__ import annotations

import datetime
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dask.config
import pytest
import yaml

from dockerparallel import DockerHardware, _config
from dockerparallel._validation import check_seconds
from dockerparallel.providers import provider_class

SHIPPED = Path(_config.__file__).with_name(_config.DEFAULTS_FILE)


# -- the shipped defaults --------------------------------------------------------------------------------------------


def test_defaults_are_loaded_into_dask_config() -> None:
    assert dask.config.get("dockerparallel.workers-per-container") == 1
    assert dask.config.get("dockerparallel.provider") == "local"
    assert _config.get("heal-interval") == "5s"
    assert _config.get("dockerparallel.providers.ecs.ingress-cidr") == "0.0.0.0/0"
    assert _config.get("no-such-key", "fallback") == "fallback"


def test_loading_twice_adds_the_defaults_once() -> None:
    first = _config.load_defaults()
    assert _config.load_defaults() is first
    assert sum(known is first for known in dask.config.defaults) == 1
    assert first == yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))


def test_the_yaml_is_package_data() -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    assert SHIPPED.exists()
    assert '"dockerparallel.yaml"' in pyproject


@pytest.mark.parametrize("name", ["local", "docker", "ecs"])
def test_every_provider_key_is_a_constructor_option(name: str) -> None:
    section = _config.load_defaults()["dockerparallel"]["providers"][name]
    accepted, _ = _config._parameters(provider_class(name))
    assert {key.replace("-", "_") for key in section} <= accepted


def test_cluster_defaults() -> None:
    defaults = _config.cluster_defaults()
    assert defaults == {
        "worker_number": 0, "worker_hardware": DockerHardware(1024, 2048),
        "server_hardware": DockerHardware(1024, 2048),
        "name": None, "verbose": 0, "security": None, "auto_heal": False, "heal_interval": 5.0,
        "init_timeout": None, "call_timeout": 600.0,
    }


def test_provider_options_are_snake_case_parsed_and_without_nulls() -> None:
    assert _config.provider_options("local") == {"grace_period": 5.0, "delete_logs": False}
    docker = _config.provider_options("docker")
    assert docker["timeout"] == 120.0 and docker["pull"] is True and "network_mode" not in docker
    ecs = _config.provider_options("ecs")
    assert ecs["cleanup_timeout"] == 300.0 and ecs["retry_delay"] == 0.5
    assert "region" not in ecs and "subnets" not in ecs


def test_write_user_file_writes_a_commented_copy_where_told(tmp_path: Path) -> None:
    _config.write_user_file(str(tmp_path))
    text = (tmp_path / _config.DEFAULTS_FILE).read_text(encoding="utf-8")
    assert "# dockerparallel:" in text
    assert yaml.safe_load(text) is None  # everything commented out


# -- overrides -------------------------------------------------------------------------------------------------------


PROBE = """
import json
from dockerparallel import _config
print(json.dumps({
    "per_container": _config.get("workers-per-container"),
    "region": _config.provider_options("ecs").get("region"),
    "hardware": list(map(str, [_config.hardware("worker-hardware").cpu, _config.hardware("worker-hardware").memory])),
    "workers": _config.cluster_defaults()["worker_number"],
    "heal_interval": _config.seconds("heal-interval"),
}))
"""


def test_a_yaml_file_in_dask_config_overrides_the_defaults(tmp_path: Path) -> None:
    (tmp_path / "mine.yaml").write_text(textwrap.dedent("""
        dockerparallel:
          workers-per-container: 3
          worker-hardware: {memory: 4 GiB}
          providers:
            ecs: {region: eu-west-1}
    """), encoding="utf-8")
    env = {**os.environ, "DASK_CONFIG": str(tmp_path), "DASK_DOCKERPARALLEL__WORKERS": "7"}
    result = subprocess.run([sys.executable, "-c", PROBE], check=False, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "per_container": 3, "region": "eu-west-1", "hardware": ["1024", "4096"], "workers": 7, "heal_interval": 5.0,
    }


def test_dask_config_set_overrides_in_process() -> None:
    with dask.config.set({"dockerparallel.workers-per-container": 4, "dockerparallel.heal_interval": "1 minute",
                          "dockerparallel.providers.ecs.region": "us-east-2",
                          "dockerparallel.server-hardware": {"cpu": 2048, "memory": "8 GiB", "id": "big"}}):
        assert _config.get("workers_per_container") == 4
        assert _config.cluster_defaults()["heal_interval"] == 60.0
        assert _config.provider_options("ecs")["region"] == "us-east-2"
        assert _config.hardware("server-hardware") == DockerHardware(2048, 8192, "big")
    assert _config.get("workers-per-container") == 1


def test_provider_options_ignore_unknown_keys_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with dask.config.set({"dockerparallel.providers.local.regoin": "x"}), caplog.at_level(logging.WARNING):
        assert "regoin" not in _config.provider_options("local")
    assert "dockerparallel.providers.local.regoin" in caplog.text


def test_provider_options_of_a_third_party_class() -> None:
    class Mine:
        def __init__(self, *, poll_interval: float = 1.0, **others: Any) -> None:
            pass

    with dask.config.set({"dockerparallel.providers.mine": {"poll-interval": "250ms", "colour": "blue"}}):
        assert _config.provider_options("mine", Mine) == {"poll_interval": 0.25, "colour": "blue"}
    assert _config.provider_options("mine", Mine) == {}


# -- times and sizes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [
    ("30s", 30.0), ("500ms", 0.5), ("5 minutes", 300.0), ("1 hour", 3600.0), ("30", 30.0), (2, 2.0), (0.25, 0.25),
    (None, None), (datetime.timedelta(minutes=2), 120.0),
])
def test_seconds_parses_numbers_and_time_strings(value: Any, expected: float | None) -> None:
    assert _config.seconds(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("4 GiB", 4096), ("512MiB", 512), ("2GB", 1907), ("1 TiB", 1024 * 1024), (2048, 2048), (4096.0, 4096),
])
def test_megabytes_parses_numbers_and_size_strings(value: Any, expected: int) -> None:
    assert _config.megabytes(value) == expected


def test_docker_hardware_takes_a_size_string() -> None:
    assert DockerHardware(memory="4 GiB") == DockerHardware(memory=4096)
    assert DockerHardware(2048, " 512 MiB ").memory == 512
    assert type(DockerHardware(memory="1 GiB").memory) is int


@pytest.mark.parametrize("value, error", [
    ("1024", TypeError), ("2 parsecs", TypeError), ("", TypeError), (True, TypeError), (None, TypeError),
    ("-1 GiB", ValueError), ("0.5 MiB", ValueError), ("2 PiB", ValueError), (0, ValueError), (1.5, ValueError),
])
def test_docker_hardware_rejects_bad_memory_naming_it(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="memory") as excinfo:
        DockerHardware(memory=value)
    assert type(excinfo.value) is error


def test_check_seconds_takes_time_strings() -> None:
    assert check_seconds("500ms", "timeout") == 0.5
    assert check_seconds("5 minutes", "timeout") == 300.0
    assert check_seconds(" 30s ", "timeout") == 30.0
    assert check_seconds(datetime.timedelta(seconds=3), "timeout") == 3.0
    assert check_seconds(7, "timeout") == 7.0 and type(check_seconds(7, "timeout")) is float


@pytest.mark.parametrize("value, error", [
    ("soon", TypeError), ("", TypeError), ("nan", TypeError), (True, TypeError), (None, TypeError),
    ("-5s", ValueError), (-1, ValueError), (float("inf"), ValueError), (float("nan"), ValueError),
])
def test_check_seconds_rejects_bad_values_naming_the_argument(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="grace_period") as excinfo:
        check_seconds(value, "grace_period")
    assert type(excinfo.value) is error


def test_check_seconds_zero() -> None:
    assert check_seconds("0s", "timeout") == 0.0
    with pytest.raises(ValueError, match="positive"):
        check_seconds("0s", "heal_interval", allow_zero=False)


# -- bad configuration values name their key ------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, words", [
    ("heal-interval", "soon", ["dockerparallel.heal-interval", "'soon' is not a time", "'30s'"]),
    ("call-timeout", "-1s", ["dockerparallel.call-timeout", "positive"]),
    ("init-timeout", 0, ["dockerparallel.init-timeout", "positive"]),
    ("workers", "many", ["dockerparallel.workers", "'many'"]),
    ("workers", -1, ["dockerparallel.workers", "at least 0"]),
    ("verbose", 3, ["dockerparallel.verbose"]),
    ("auto-heal", "yes", ["dockerparallel.auto-heal", "'yes'"]),
    ("security", "yes", ["dockerparallel.security", "'yes'"]),
    ("name", "bad/name", ["dockerparallel.name", "'bad/name'"]),
    ("worker-hardware.memory", "lots", ["dockerparallel.worker-hardware.memory", "'lots' is not a size"]),
    ("worker-hardware.cpu", 0, ["dockerparallel.worker-hardware", "cpu"]),
    ("server-hardware.gpu", 1, ["dockerparallel.server-hardware", "gpu"]),
    ("server-hardware", "big", ["dockerparallel.server-hardware", "mapping"]),
])
def test_bad_cluster_values_raise_value_error_naming_the_key(key: str, value: Any, words: list[str]) -> None:
    with dask.config.set({f"dockerparallel.{key}": value}), pytest.raises(ValueError) as excinfo:
        _config.cluster_defaults()
    assert type(excinfo.value) is ValueError
    for word in words:
        assert word in str(excinfo.value), str(excinfo.value)


@pytest.mark.parametrize("key, value, words", [
    ("providers.ecs.cleanup-timeout", "soon", ["dockerparallel.providers.ecs.cleanup-timeout", "'soon'"]),
    ("providers.local.grace-period", "-2s", ["dockerparallel.providers.local.grace-period", "non-negative"]),
    ("providers.local", "fast", ["dockerparallel.providers.local", "mapping"]),
])
def test_bad_provider_values_raise_value_error_naming_the_key(key: str, value: Any, words: list[str]) -> None:
    name = key.split(".")[1]
    with dask.config.set({f"dockerparallel.{key}": value}), pytest.raises(ValueError) as excinfo:
        _config.provider_options(name)
    for word in words:
        assert word in str(excinfo.value), str(excinfo.value)


def test_getters_on_values_name_the_argument() -> None:
    with pytest.raises(TypeError, match="interval"):
        _config.seconds("soon", name="interval")
    with pytest.raises(TypeError, match="memory"):
        _config.megabytes("1024")


def test_docker_cluster_takes_its_defaults_from_the_config() -> None:
    from dockerparallel import DockerContainer, DockerCluster
    from dockerparallel.testing import FakeCloudProvider

    container = DockerContainer("img", command=["w"])
    with dask.config.set({"dockerparallel.workers": 3, "dockerparallel.worker-hardware.memory": "4 GiB",
                          "dockerparallel.call-timeout": "90s", "dockerparallel.name": "from-config"}):
        cluster = DockerCluster(FakeCloudProvider(), container, server_container=container, state=False)
    assert cluster.expected_workers == 3 and cluster.worker_hardware.memory == 4096
    assert cluster.name == "from-config" and cluster.lifecycle.call_timeout == 90.0
    explicit = DockerCluster(FakeCloudProvider(), container, server_container=container, state=False,
                             worker_number=1)
    assert explicit.expected_workers == 1  # an argument wins over the config
