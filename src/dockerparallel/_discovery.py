"""Cluster discovery for dask-ctl (``dask cluster list``): the clusters of the state store.

dask-ctl loads every function registered in the ``dask_cluster_discovery``
entry-point group (this package registers :func:`discover` as
``dockerparallel``), iterates it, and rebuilds each cluster with
``ClusterClass.from_name(name)``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, AsyncIterator

if TYPE_CHECKING:
    from .cluster import DockerCluster

logger = logging.getLogger("dockerparallel.discovery")


async def discover() -> AsyncIterator[tuple[str, type[DockerCluster]]]:
    """Yield ``(name, DockerCluster)`` for each cluster recorded in the state store.

    The store is the one :class:`~dockerparallel.state.StateStore` opens by
    default (``DOCKERPARALLEL_STATE``, else the user data directory). Nothing
    is asked of any provider: ``DockerCluster.from_name(name)`` does that.
    Dask is imported only when there is a cluster to yield.

    Yields
    ------
    tuple of (str, type)
        The cluster's name and :class:`~dockerparallel.DockerCluster`.
    """
    from ._errors import StateStoreError
    from .state import StateStore

    try:
        records = StateStore().list_clusters()
    except StateStoreError:
        logger.warning("cannot read the state store; no dockerparallel cluster discovered", exc_info=True)
        return
    if not records:
        return
    from .cluster import DockerCluster

    for record in records:
        yield record.name, DockerCluster
