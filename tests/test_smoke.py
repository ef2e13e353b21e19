from dockerparallel import DockerCluster, DockerContainer
from dockerparallel.testing import FakeCloudProvider


def test_scale_with_four_workers_per_container() -> None:
    container = DockerContainer("img", command=["w"], max_workers_per_container=4)
    provider = FakeCloudProvider()
    cluster = DockerCluster(provider, container, server_container=container, name="smoke")
    cluster.start_cluster()
    cluster.set_worker_number(10)
    assert cluster.get_worker_numbers() == (0, 10, 10)
    cluster.set_worker_number(5)
    assert cluster.get_worker_numbers() == (0, 6, 5)
    cluster.set_worker_number(0)
    assert cluster.get_worker_numbers() == (0, 0, 0)
