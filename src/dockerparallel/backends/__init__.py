"""Computing-engine backends: what runs inside the server and worker containers."""

from .dask import DaskWorkerContainer, default_image

__all__ = ["DaskWorkerContainer", "default_image"]
