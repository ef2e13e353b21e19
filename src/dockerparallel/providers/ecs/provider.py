"""`ECSFargateProvider`: the server and the workers as AWS ECS tasks on Fargate.

The provider itself: its options, the server, finding a cluster again, and
the three worker primitives. AWS calls and their errors live in
:mod:`._api`, the rules of Fargate in :mod:`._fargate`, the resources in
:mod:`._resources` and :mod:`._definitions`, and the tasks in :mod:`._tasks`.
Every public method runs under the one botocore error map
(:func:`~._api.aws_errors`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..._verbose import say
from ..._errors import ProviderError
from ..._validation import check_flag
from ...managed import ManagedCloudProvider, ProviderCapabilities
from ...provider import ClusterView, ProviderOption, ProviderPlugin, ServerAddress
from ._api import BOTO3_MISSING, AwsApi, Refused, aws_errors, error_code, error_kind
from ._definitions import Once
from ._fargate import (
    OVERRIDES_MAX,
    RUN_TASK_MAX,
    TAG_ROLE,
    FargateResources,
    Launch,
    counts,
    default_log_group,
    fargate_size,
    network_configuration,
    overrides,
    overrides_length,
    port_in,
    tag_map,
    task_address,
    task_environment,
    task_status,
    task_tags,
    task_workers,
    workers_per_task,
)
from ._logs import TaskLogs
from ._options import FargateOptions, OptionAttributes
from ._resources import ClusterResources, summary
from ._tasks import Tasks

if TYPE_CHECKING:
    from ...container import DockerContainer, DockerHardware

logger = logging.getLogger("dockerparallel.providers.ecs")


class ECSFargateProvider(OptionAttributes, ManagedCloudProvider):
    """Runs the server and the workers as ECS tasks on AWS Fargate.

    Parameters
    ----------
    region : str, optional
        AWS region (default: boto3's chain: ``AWS_DEFAULT_REGION``, the profile).
    profile : str, optional
        AWS profile to take credentials and region from.
    subnets : str or list of str, optional
        Subnet ids for the tasks (default: the default-for-zone subnets of
        ``vpc_id`` or of the default VPC).
    security_groups : str or list of str, optional
        Security group ids (default: one created per cluster that opens the
        scheduler and dashboard ports to ``ingress_cidr`` and every TCP port
        between the cluster's own tasks).
    vpc_id : str, optional
        VPC to take subnets from and create the security group in.
    ecs_cluster_name : str, optional
        An existing ECS cluster to use (default: one named after the cluster).
    execution_role_arn : str, optional
        An existing task execution role (default: one created per cluster
        with ``AmazonECSTaskExecutionRolePolicy``).
    log_group : str, optional
        An existing CloudWatch log group (default: ``/dockerparallel/<name>``, created).
    server_task_definition, worker_task_definition : str, optional
        Existing task definitions (family, ``family:revision`` or ARN) to run
        instead of registering them; their image is used, not the container's.
    assign_public_ip : bool
        Give tasks a public IP (needed to pull public images from a public
        subnet without a NAT gateway, and for a client outside the VPC).
    ingress_cidr : str
        Who may reach the scheduler and dashboard ports of a created security group.
    scheduler_port, dashboard_port : int
        Ports the server listens on (the scheduler port is read from the server
        container's ``DOCKERPARALLEL_SERVER_PORT`` when it is set).
    endpoint_url : str, optional
        One endpoint for every AWS service (tests point it at a moto server).
    session : boto3.Session, optional
        The session to create clients from (default: a new one).
    max_attempts : int
        Tries of each AWS call on throttling and time-outs.
    retry_delay : float
        Seconds before the first retry; doubled at each further one (with jitter).
    cleanup_timeout : float
        Seconds a deep cleanup waits for AWS to let go of a resource still in use.
    max_concurrent_calls : int
        How many ``run_task`` batches (of at most 10 tasks each) a scale-up
        runs at once, 1 to 16.
    delete_logs : bool
        Whether a deep cleanup (``dockerparallel down``) also deletes the log
        group it created, and the logs in it. By default the log group stays,
        so that :meth:`get_docker_logs` still reads the logs of a cluster that
        is down. A plain attribute: ``provider.delete_logs = True`` before a
        cleanup works too.

    Notes
    -----
    Every public method translates botocore's errors through one table
    (:data:`~dockerparallel.providers.ecs.ERROR_TABLE`): throttling that
    outlasts the retries raises :class:`~dockerparallel.ProviderThrottled`,
    anything else :class:`~dockerparallel.ProviderError` naming this class
    and the method, never a credential.
    """

    plugin = ProviderPlugin(
        name="ecs", install="dockerparallel[aws]", modules=("boto3",),
        options=(
            ProviderOption("region", "AWS region."),
            ProviderOption("profile", "AWS profile to take credentials and region from."),
            ProviderOption("subnets", "Subnet id, repeatable.", multiple=True, flag="subnet"),
            ProviderOption("security_groups", "Security group id, repeatable.", multiple=True, flag="security-group"),
            ProviderOption("vpc_id", "VPC to take subnets from and create the security group in."),
            ProviderOption("assign_public_ip", "Give tasks a public IP.", bool),
            ProviderOption("endpoint_url", "One endpoint for every AWS service."),
        ),
    )

    def __init__(
        self, *, region: str | None = None, profile: str | None = None,
        subnets: str | Sequence[str] | None = None, security_groups: str | Sequence[str] | None = None,
        vpc_id: str | None = None, ecs_cluster_name: str | None = None, execution_role_arn: str | None = None,
        log_group: str | None = None, server_task_definition: str | None = None,
        worker_task_definition: str | None = None, assign_public_ip: bool = True, ingress_cidr: str = "0.0.0.0/0",
        scheduler_port: int = 8786, dashboard_port: int = 8787, endpoint_url: str | None = None,
        session: Any = None, max_attempts: int = 5, retry_delay: float = 0.5, cleanup_timeout: float = 300.0,
        max_concurrent_calls: int = 4, delete_logs: bool = False,
    ) -> None:
        if BOTO3_MISSING is not None:
            raise ImportError("ECSFargateProvider needs boto3: pip install 'dockerparallel[aws]'") from BOTO3_MISSING
        self.options = FargateOptions.check(
            region=region, profile=profile, subnets=subnets, security_groups=security_groups, vpc_id=vpc_id,
            ecs_cluster_name=ecs_cluster_name, execution_role_arn=execution_role_arn, log_group=log_group,
            server_task_definition=server_task_definition, worker_task_definition=worker_task_definition,
            assign_public_ip=assign_public_ip, ingress_cidr=ingress_cidr, scheduler_port=scheduler_port,
            dashboard_port=dashboard_port, endpoint_url=endpoint_url, session=session, max_attempts=max_attempts,
            retry_delay=retry_delay, cleanup_timeout=cleanup_timeout, max_concurrent_calls=max_concurrent_calls)
        self._api = AwsApi(self.options.api)
        self._stack = ClusterResources(self._api, self.options.given, self.options.network)
        self._tasks = Tasks(self._api)
        self._logs = TaskLogs(self._api)
        self.delete_logs = check_flag(delete_logs, "delete_logs")
        self._server_arn: str | None = None
        self._warned_sizes = Once()

    def __repr__(self) -> str:
        cluster = self._stack.current.ecs_cluster if self._stack.current else self.ecs_cluster_name
        return f"<ECSFargateProvider region={self._api.known_region()!r} ecs_cluster={cluster!r}>"

    def spec_options(self) -> dict[str, Any]:
        """Return the constructor options that rebuild this provider in another process.

        Plain JSON values, no secret: credentials come from the environment of
        the process that rebuilds it. The region is recorded as resolved, so
        that the other process looks in the same region.
        """
        return {**self.options.spec(self._api.known_region()), "delete_logs": self.delete_logs}

    # -- AWS and the cluster's resources --------------------------------------------------------------------------

    @aws_errors
    def client(self, service: str) -> Any:
        """Return the boto3 client of ``service`` (``"ecs"``, ``"ec2"``, ``"iam"``, ``"logs"``, ``"secretsmanager"``).

        Clients are created once, from one session, with ``endpoint_url`` when
        set, and with botocore's own retries off: every call is retried by the
        provider, where a retried ``run_task`` can look for the tasks of the
        failed try. Thread-safe.

        Raises
        ------
        ProviderError
            When no region or no credentials are configured.
        """
        return self._api.client(service)

    @aws_errors
    def initialize_cloud_provider(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Find or create what ``cluster`` needs on AWS and remember it.

        The ECS cluster, the task execution role, the log group, the network
        (subnets and security group), the secret that holds the containers'
        secret variables (when they have some) and the server and worker task
        definitions. Idempotent: a second call finds and reuses everything.

        Parameters
        ----------
        cluster : ClusterView
            The cluster; its name identifies the resources.
        verbose : int
            Log the outcome at INFO level when non-zero (each step is logged at DEBUG).
        """
        say(logger, verbose, "%s", summary(self._stack.initialize(cluster)))

    @aws_errors
    def resources(self, cluster: ClusterView) -> FargateResources:
        """Return the resources of ``cluster``, initializing the provider first when needed.

        Thread-safe: concurrent first launches initialize once, the others wait for it.
        """
        return self._stack.ensure(cluster)

    def _ecs_cluster(self, cluster: ClusterView) -> str:
        return self._stack.ecs_cluster_for(cluster.name)

    def _stop(self, cluster: ClusterView, arn: str, task: Mapping[str, Any] | None) -> bool:
        reason = f"dockerparallel: stopped by cluster {cluster.name}"
        return self._tasks.stop(self._ecs_cluster(cluster), arn, task, reason)

    # -- launching tasks ------------------------------------------------------------------------------------------

    def _task_size(self, cpu: int, memory: int) -> tuple[int, int]:
        size = fargate_size(cpu, memory)
        if size != (cpu, memory) and self._warned_sizes.first((cpu, memory)):
            logger.warning("cpu=%d memory=%d MB is not a Fargate task size; using the nearest valid size "
                           "cpu=%d memory=%d MB", cpu, memory, size[0], size[1])
        return size

    def _launch_spec(self, cluster: ClusterView, role: str, container: DockerContainer,
                     size: tuple[int, int], workers: int) -> Launch:
        res = self._stack.ensure(cluster)
        definition = self._stack.task_definition(cluster, role, container)
        network = network_configuration(res.subnets, res.security_groups, self.assign_public_ip)
        override = overrides(definition.container, container, size, definition.from_secrets)
        length = overrides_length(override)
        if length > OVERRIDES_MAX:
            raise Refused(f"the {role} container's command and environment take {length} "
                          f"characters; ECS allows {OVERRIDES_MAX} in a task's overrides")
        return Launch(res.ecs_cluster, definition.arn, override, network, task_tags(cluster.name, role, workers))

    # -- the server -----------------------------------------------------------------------------------------------

    @aws_errors
    def run_docker_server(self, cluster: ClusterView, container: DockerContainer, hardware: DockerHardware,
                          verbose: int = 0) -> None:
        """Start one task of the server task definition.

        Raises
        ------
        ProviderError
            When ECS starts no task (its reason is logged), or refuses.
        ProviderThrottled
            When AWS throttled ``run_task`` for every try.
        """
        self._stack.server_port = port_in(container.environment, self.scheduler_port)
        spec = self._launch_spec(cluster, "server", container, self._task_size(hardware.cpu, hardware.memory), 0)
        arns, error = self._tasks.start(spec, 1)
        if not arns:
            if error is not None:
                raise error
            raise Refused("ECS started no server task (see the log)")
        self._server_arn = arns[0]
        say(logger, verbose, "server task %s started", self._server_arn)

    @aws_errors
    def stop_docker_server(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Stop the server task; stopping a stopped or unknown server is success."""
        if self._server_arn is not None:
            task = self._server_task(cluster)
            if not self._stop(cluster, self._server_arn, task):
                raise Refused(f"could not stop the server task {self._server_arn}")
        self._server_arn = None

    def _server_task(self, cluster: ClusterView) -> dict[str, Any] | None:
        if self._server_arn is None:
            return None
        return self._tasks.describe(self._ecs_cluster(cluster), [self._server_arn]).get(self._server_arn)

    @aws_errors
    def get_server_status(self, cluster: ClusterView, verbose: int = 0) -> str:
        """Return the server task's status (``"stopped"`` when there is none)."""
        return task_status(self._server_task(cluster))

    @aws_errors
    def get_docker_server_ip(self, cluster: ClusterView, verbose: int = 0) -> ServerAddress:
        """Return the server's addresses, read from the server task's network interface.

        The private address comes from the task's ENI attachment; the public
        one from that interface's association (``None`` without one).

        Raises
        ------
        ProviderError
            When there is no server task or it has no network interface yet.
        """
        task = self._server_task(cluster)
        if task is None:
            raise Refused("no server task runs; start the server first")
        private_ip, interface = task_address(task)
        if private_ip is None:
            raise Refused(f"the server task {task.get('taskArn')} has no network interface yet "
                          f"(lastStatus {task.get('lastStatus')}); wait until it runs")
        public_ip = self._public_ip(interface) if interface and self.assign_public_ip else None
        port = self._stack.server_port
        return ServerAddress(public_ip, port if public_ip else None, private_ip, port)

    def _public_ip(self, interface: str) -> str | None:
        try:
            found = self._api.call("ec2", "describe_network_interfaces", NetworkInterfaceIds=[interface])
        except Exception as exc:
            if error_kind(exc) != "error":  # throttling, time-outs, credentials: the caller hears of them
                raise
            logger.debug("no public address: describe_network_interfaces failed (%s)", error_code(exc))
            return None
        for eni in found.get("NetworkInterfaces", []):
            public = (eni.get("Association") or {}).get("PublicIp")
            if public:
                return str(public)
        logger.debug("network interface %s has no public address", interface)
        return None

    # -- another process: exists, reconnect, cleanup --------------------------------------------------------------

    @aws_errors
    def docker_cluster_exists(self, cluster: ClusterView, verbose: int = 0) -> bool:
        """Return whether a live server task is tagged with ``cluster.name``."""
        return bool(self._tasks.of_cluster(self._ecs_cluster(cluster), cluster.name, "server"))

    @aws_errors
    def reconnect_docker_cluster(self, cluster: ClusterView, verbose: int = 0) -> None:
        """Adopt the server task and the worker tasks tagged with ``cluster.name``."""
        tasks = self._tasks.of_cluster(self._ecs_cluster(cluster), cluster.name)
        servers = [t for t in tasks if tag_map(t.get("tags")).get(TAG_ROLE) == "server"]
        if servers:
            self._server_arn = str(servers[-1]["taskArn"])
            self._stack.server_port = port_in(task_environment(servers[-1]), self.scheduler_port)
        known = set(self.worker_ledger.handles())
        workers = [t for t in tasks if tag_map(t.get("tags")).get(TAG_ROLE) == "worker" and t["taskArn"] not in known]
        for task in workers:
            self.add_managed_worker_handles([task["taskArn"]] * task_workers(task))
        say(logger, verbose, "reconnected to cluster %r: server %s, %d worker task(s) adopted",
            cluster.name, self._server_arn, len(workers))

    @aws_errors
    def cleanup_docker_cluster(self, cluster: ClusterView, deep: bool = False, verbose: int = 0) -> None:
        """With ``deep=True``, stop every task tagged with the cluster and remove what initialize created.

        Resources that initialize found (or that you named) are left alone; the
        created ones are recognised by their ``dockerparallel-created-by`` tag,
        so this works from a fresh provider object too. A created log group
        stays (with the tasks' logs) unless :attr:`delete_logs` is set.
        Without ``deep`` nothing is held that needs releasing.

        Raises
        ------
        ProviderError
            Naming what could not be removed, after trying everything.
        """
        if not deep:
            return
        left = [f"task {t['taskArn']} (stop_task failed)"
                for t in self._tasks.of_cluster(self._ecs_cluster(cluster), cluster.name)
                if not self._stop(cluster, t["taskArn"], t)]
        self._server_arn = None
        current = self._stack.current
        res = current if current and current.owner == cluster.name else self._stack.resolve(cluster.name, False)
        left += self._stack.remove_created(cluster.name, res, self.delete_logs)
        self._stack.forget()
        say(logger, verbose, "removed the AWS resources created for cluster %r", cluster.name)
        if "log_group" in res.created and res.log_group and not self.delete_logs:
            say(logger, verbose, "kept the log group %s and its logs (delete_logs=True removes it)", res.log_group)
        if left:
            raise Refused("could not remove: " + "; ".join(left))

    @aws_errors
    def get_docker_logs(self, cluster: ClusterView, verbose: int = 0) -> dict[str, str]:
        """Return what the cluster's tasks printed, read from CloudWatch Logs, the server first.

        Each task's stream is ``<awslogs-stream-prefix>/<container name>/<task
        id>`` in its task definition's log group, read whole with
        ``get_log_events``. The tasks are the live and stopped ones ECS still
        describes (tagged with the cluster, or held by this provider); in the
        cluster's own log group (not one given with ``log_group=``) the
        ``server/server/`` and ``worker/worker/`` streams of tasks ECS has
        forgotten are read too, after a deep cleanup included.

        Parameters
        ----------
        cluster : ClusterView
            The cluster; its name finds the tasks and the log group.
        verbose : int
            Log how many logs were read at INFO level when non-zero.

        Returns
        -------
        dict of str to str
            ``"server"`` (the server task held, else the newest), then
            ``"server <task arn>"`` for earlier servers and ``"worker <task
            arn>"`` for the workers, oldest first; a stream whose task ECS
            forgot is named by its stream name instead of the ARN. A task
            whose stream does not exist yet has no entry.
        """
        known = [self._server_arn or "", *self.worker_ledger.handles()]
        tasks = self._tasks.tagged(self._ecs_cluster(cluster), cluster.name, known)
        own_group = None if self.log_group else default_log_group(cluster.name)
        logs = self._logs.collect(tasks, self._server_arn, own_group)
        say(logger, verbose, "read the logs of %d container(s) of cluster %r", len(logs), cluster.name)
        return logs

    # -- the three primitives -------------------------------------------------------------------------------------

    def launch_capabilities(self, container: DockerContainer, hardware: DockerHardware) -> ProviderCapabilities:
        """The launch limits for workers of ``container`` on ``hardware``: one ``run_task`` batch per call.

        Returns
        -------
        ProviderCapabilities
            At most :data:`RUN_TASK_MAX` full tasks' worth of workers per call
            (``RUN_TASK_MAX * workers_per_task(container, hardware)``), and
            ``max_concurrent_calls`` calls at once.

        Raises
        ------
        ProviderError
            When even one worker of ``hardware`` does not fit in the largest
            Fargate task (as a run call would raise it).
        """
        try:
            per_task = workers_per_task(container, hardware)
        except ValueError as exc:
            raise ProviderError(self, "launch_capabilities", str(exc)) from exc
        return ProviderCapabilities(max_workers_per_call=RUN_TASK_MAX * per_task,
                                    max_concurrent_calls=self.max_concurrent_calls)

    @aws_errors
    def run_docker_worker_containers(self, cluster: ClusterView, container: DockerContainer,
                                     hardware: DockerHardware, worker_number: int, verbose: int = 0) -> list[str]:
        """Start ``worker_number`` workers in Fargate tasks of up to ``workers_per_task`` workers.

        Tasks of the same size start together, at most 10 per ``run_task``
        call. Returns each task's ARN once per worker it holds; when a call
        fails for good after some tasks started, returns those (a partial
        launch) rather than lose them. Thread-safe: the managed layer runs up
        to ``max_concurrent_calls`` of these at once (see :meth:`launch_capabilities`).
        """
        per_task = workers_per_task(container, hardware)
        full, rest = divmod(worker_number, per_task)
        plan = []  # everything that can fail before a task starts is done first
        for workers, tasks in ((per_task, full), (rest, 1 if rest else 0)):
            if tasks:
                size = self._task_size(workers * hardware.cpu, workers * hardware.memory)
                spec = self._launch_spec(cluster, "worker", container.for_workers(workers, hardware), size, workers)
                plan.append((workers, tasks, spec))
        handles: list[str] = []
        for workers, tasks, spec in plan:
            for count in counts(tasks, RUN_TASK_MAX):
                arns, error = self._tasks.start(spec, count)
                handles += [arn for arn in arns for _ in range(workers)]
                if error is not None:
                    return self._partial(handles, worker_number, error)
        say(logger, verbose, "started %d worker(s) in %d task(s)", len(handles), len(set(handles)))
        return handles

    def _partial(self, handles: list[str], asked: int, error: BaseException) -> list[str]:
        if not handles:
            raise error
        logger.warning("started %d of %d worker(s) before an error; returning those: %s", len(handles), asked, error)
        return handles

    @aws_errors
    def get_docker_worker_status(self, cluster: ClusterView, worker_handles: list[str],
                                 verbose: int = 0) -> list[str]:
        """Return each task's status, asked with ``describe_tasks`` in chunks of 100.

        A task unknown to ECS (or a handle that is no task ARN) is ``"stopped"``.
        """
        tasks = self._tasks.describe(self._ecs_cluster(cluster), worker_handles)
        return [task_status(tasks.get(handle)) for handle in worker_handles]

    @aws_errors
    def kill_docker_worker_containers(self, cluster: ClusterView, worker_handles: list[str],
                                      verbose: int = 0) -> list[bool]:
        """Stop each task with ``stop_task``; unknown and already stopped tasks are success."""
        tasks = self._tasks.describe(self._ecs_cluster(cluster), worker_handles)
        return [self._stop(cluster, handle, tasks.get(handle)) for handle in worker_handles]
