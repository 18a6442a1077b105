"""Where per-image work runs, for every dataset job: in this process, or as Ray tasks on a
local runtime or a cluster.

Both executors take a stream of ``(context, task)`` pairs, where ``task`` is :class:`Ready`
(the result is already known, e.g. from the map cache) or :class:`Work` (a module-level
function of a classifier and picklable arguments, a *unit*), and yield ``(context, result)``
**in the order given**. Every job (``explain``, ``compare``, ``gate``, ``global``, ``animate``)
calls the same unit in both cases, so whatever consumes the results (the record book, the
cache, the files) sees the same sequence with or without Ray, and a Ray run writes exactly
what a serial run writes.

:class:`RayExecutor` uses Ray (https://www.ray.io), the existing distributed engine:

* **one actor per worker**, each holding one :class:`~blackbox_cam.model.runtime.Classifier`
  built from the model's bytes (:class:`ModelBundle`), so workers on other machines need
  neither the model file nor the images on a shared disk (images travel as bytes,
  :class:`ImageSource`);
* **placement** (:func:`plan_workers`): one actor per CPU of the cluster, or, when the cluster
  declares GPUs, one actor per GPU (``gpus_per_worker``, ``--ray-gpus-per-worker``) whose
  classifier asks for ONNX Runtime's CUDA provider (``device="auto"``: CUDA when it
  initialises on that node). Each actor's classifier picks its own batch size for its device
  (:meth:`~blackbox_cam.model.backends.Session.auto_batch`) unless the user fixed one;
* **bounded memory**: at most ``2 x workers`` tasks in flight (and ``8 x workers`` results
  held, cached ones included), results consumed in order as they come;
* **fault tolerance**: actors restart when their process dies (``max_restarts=-1``); a task
  whose worker died (killed, out of memory, node lost) is sent again to the next live worker,
  and after :data:`MAX_ATTEMPTS` deaths *on that task* (the tasks queued behind it on the
  dying worker are resent free of charge) it yields :class:`Failed`, so the job records that
  image as an error and goes on. :attr:`RayExecutor.retries` counts resends.
"""
from __future__ import annotations

import math
import os
import socket
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..errors import BlackboxCamError

#: Deaths of a worker on one task before the task is recorded as failed (and the job goes on).
MAX_ATTEMPTS = 3
#: Seconds ``--ray`` keeps trying to start a local Ray runtime (``--ray-start-timeout``).
DEFAULT_START_TIMEOUT = 90.0
#: Seconds to wait for a TCP answer from a cluster address before saying it is unreachable.
CONNECT_TIMEOUT = 5.0


@dataclass(frozen=True)
class Ready:
    """A task whose result is already known."""

    value: Any


@dataclass(frozen=True)
class Work:
    """``fn(clf, *args)``, ``fn`` a module-level function (so Ray ships it by reference);
    ``name`` names the task in messages (the image)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    name: str = ""


@dataclass(frozen=True)
class Failed:
    """A unit that failed: the message says which image and what is wrong."""

    error: str


def message(e: BaseException) -> str:
    """One line for an exception: our own errors as they are, others with their type."""
    return str(e) if isinstance(e, BlackboxCamError) else f"{type(e).__name__}: {e}"


def named(name: Any, error: str) -> str:
    """``error`` as one line about ``name``: prefixed with it unless it already starts with it (a
    reader's errors name their file themselves, so the name is not said twice)."""
    name = str(name)
    return error if error.startswith(name) else f"{name}: {error}"


def failed(name: str, e: BaseException) -> Failed:
    """:class:`Failed` whose message names ``name`` once."""
    m = message(e)
    return Failed(m if name and name in m else f"{name}: {m}" if name else m)


@dataclass(frozen=True)
class ImageSource:
    """An image for a unit: a path (in-process), the file's bytes plus its name (Ray: workers
    need no shared disk), or the already-read array (in-process, read once by the driver).

    :meth:`read` gives what :meth:`blackbox_cam.jobs.dataset.Item.read` gives for the same file
    (:func:`blackbox_cam.io.images.read_image`: large images reduced, EXIF applied)."""

    name: str
    path: str | None = None
    data: bytes | None = None
    image: np.ndarray | None = field(default=None, compare=False, repr=False)
    size: tuple[int, int] | None = None

    def read(self) -> tuple[np.ndarray, tuple[int, int]]:
        from ..io.images import read_image
        if self.image is not None:
            return self.image, tuple(self.size or self.image.shape[:2])
        if self.path is not None:
            return read_image(self.path)
        fd, tmp = tempfile.mkstemp(suffix=Path(self.name).suffix, prefix="bbcam-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.data or b"")
            try:
                return read_image(tmp)
            except BlackboxCamError as e:
                raise BlackboxCamError(str(e).replace(tmp, self.name)) from None
        finally:
            os.unlink(tmp)

    def load(self) -> np.ndarray:
        return self.read()[0]

    @classmethod
    def of(cls, name: str, path: str | os.PathLike, *, remote: bool, image: np.ndarray | None = None,
           size: tuple[int, int] | None = None) -> "ImageSource":
        """The source a unit gets: the file's bytes for a remote executor, else the array when the
        driver already read it, else the path."""
        if remote:
            return cls(name, data=Path(path).read_bytes())
        if image is not None:
            return cls(name, image=image, size=size)
        return cls(name, path=str(path))


def item_tasks(items: Iterable[Any], executor: Any, unit: Callable[..., Any], *args: Any,
               source: Callable[[Any, bool], ImageSource] | None = None) -> Iterator[tuple[Any, Ready | Work]]:
    """``(item, task)`` for each dataset item (:class:`~blackbox_cam.jobs.dataset.Item`): ``Ready(None)``
    for a skipped file, ``Ready(Failed)`` for one known bad before reading (or whose bytes cannot be
    read for a remote worker), else ``Work(unit, (source, *args))`` on its :class:`ImageSource`
    (``source(item, remote)`` when given, e.g. for in-memory images; else the item's file)."""
    for item in items:
        if getattr(item, "skip", False):
            yield item, Ready(None)
        elif getattr(item, "error", None) is not None:   # known before reading (Item.read would raise it)
            yield item, Ready(Failed(item.error))
        else:
            try:
                src = (source(item, executor.remote) if source is not None
                       else ImageSource.of(str(item.path), item.path, remote=executor.remote))
            except OSError as e:       # remote: the file's bytes could not be read
                yield item, Ready(Failed(f"{item.path}: {e}"))
                continue
            yield item, Work(unit, (src, *args), src.name)


class LocalExecutor:
    """Runs every task here, in order, on ``clf``."""

    workers = 1
    remote = False
    retries = 0

    def __init__(self, clf: Any) -> None:
        self.clf = clf

    def imap(self, tasks: Iterable[tuple[Any, Ready | Work]]) -> Iterator[tuple[Any, Any]]:
        for ctx, task in tasks:
            yield ctx, task.value if isinstance(task, Ready) else task.fn(self.clf, *task.args)

    def describe(self) -> list[str]:
        return []

    def close(self) -> None:
        pass

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# -- Ray ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelBundle:
    """What a worker needs to rebuild the driver's classifier: the model's bytes, its sidecar,
    the labels in use and the classifier's options."""

    name: str
    model: bytes
    sidecar: bytes | None
    labels: tuple[str, ...] | None
    kwargs: tuple[tuple[str, Any], ...]
    task: str = "classifier"   # or "detector": the worker builds a Detector with the driver's thresholds

    @classmethod
    def of(cls, clf: Any, kwargs: dict[str, Any]) -> "ModelBundle":
        path = Path(clf.path)
        side = getattr(clf, "sidecar_file", None) or path.with_suffix(".json")
        kw = {k: v for k, v in kwargs.items() if k not in ("labels", "sidecar") and v is not None}
        task = "detector" if getattr(clf, "task", None) == "detector" else "classifier"
        if task == "detector":
            kw.update(conf=clf.conf, iou=clf.iou, max_detections=clf.max_detections)
        return cls(path.name, path.read_bytes(), Path(side).read_bytes() if Path(side).is_file() else None,
                   tuple(clf.labels) if clf.labels else None, tuple(sorted(kw.items())), task)

    def build(self, threads: int | None = 1, device: str | None = None) -> Any:
        """A :class:`~blackbox_cam.model.runtime.Classifier` (or a
        :class:`~blackbox_cam.model.detector.Detector` for a detector's bundle) in a private folder
        of this process (``device``: overrides the driver's, e.g. ``auto`` on a GPU actor)."""
        from ..model import runtime
        d = Path(tempfile.mkdtemp(prefix="bbcam-worker-"))
        model = d / self.name
        model.write_bytes(self.model)
        if self.sidecar is not None:
            model.with_suffix(".json").write_bytes(self.sidecar)
        kwargs = dict(self.kwargs)
        if device is not None:
            kwargs["device"] = device
        if self.labels is not None:
            (d / "labels.txt").write_text("\n".join(self.labels) + "\n", encoding="utf-8")
            kwargs["labels"] = d / "labels.txt"
        if threads:
            _limit_session_threads(threads)
        if self.task == "detector":
            from ..model.detector import Detector
            return Detector(model, **kwargs)
        return runtime.Classifier(model, **kwargs)


def _limit_session_threads(threads: int) -> None:
    """In a worker process only: every compiled model (the classifier's and the gradient graph's)
    gets ``threads`` intra-op threads. One worker runs per CPU; ONNX Runtime's default of one
    thread per core in every worker would oversubscribe the machine."""
    from ..model import backends, runtime
    original = backends.compile_model
    if getattr(original, "_bbcam_threads", None) == threads:
        return

    def limited(model, backend="auto", device="auto", *, threads=None):
        return original(model, backend, device, threads=threads or limit)

    limit = threads
    limited._bbcam_threads = threads
    backends.compile_model = limited   # looked up at call time by the gradient builder
    runtime.compile_model = limited    # imported by name into the runtime


class _Worker:
    """Ray actor body: one classifier per worker process, reused for every task."""

    def __init__(self, bundle: ModelBundle, threads: int, device: str | None = None) -> None:
        self.clf = bundle.build(threads, device)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.clf, *args)

    def ping(self) -> dict[str, Any]:
        """Who this worker is: its node, process id, GPUs and what runs the model."""
        import ray
        ctx = ray.get_runtime_context()
        return {"node": ctx.get_node_id(), "host": socket.gethostname(), "pid": os.getpid(),
                "gpus": [str(g) for g in ray.get_gpu_ids()], "engine": self.clf.session.describe(),
                "batch": int(self.clf.batch_size)}


@dataclass(frozen=True)
class WorkerPlan:
    """How many actors to start and what each declares to Ray's scheduler."""

    workers: int
    num_cpus: float
    num_gpus: float
    device: str | None      # the classifier's device on the actor (None: the driver's)

    def describe(self) -> str:
        each = f"{self.num_gpus:g} GPU" if self.num_gpus else f"{self.num_cpus:g} CPU"
        return f"{self.workers} worker(s), {each} each"


def plan_workers(resources: Mapping[str, float], workers: int | None = None,
                 gpus_per_worker: float | None = None, device: str | None = "auto") -> WorkerPlan:
    """Actors for a cluster with ``resources`` (``ray.cluster_resources()``).

    * ``gpus_per_worker`` None: one actor per GPU when the cluster has GPUs and ``device`` is
      not ``cpu``, else one actor per CPU; 0: CPU actors even on a GPU cluster; G > 0: actors
      of G GPUs each (0.5: two actors share a GPU), their classifier on ``device="auto"``
      (ONNX Runtime's CUDA provider when it initialises on the node).
    * ``workers``: the number of actors (default: as many as the resources hold); more GPU
      actors than the GPUs hold is refused (they would never be scheduled).
    """
    if workers is not None and workers < 1:
        raise BlackboxCamError(f"--workers {workers}: need at least 1 worker")
    cpus = float(resources.get("CPU", 1) or 1)
    gpus = float(resources.get("GPU", 0) or 0)
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise BlackboxCamError(f"--ray-gpus-per-worker {gpus_per_worker:g}: must be 0 (CPU workers) or more")
    gpw = (1.0 if gpus and device != "cpu" else 0.0) if gpus_per_worker is None else float(gpus_per_worker)
    if gpw > 0:
        if not gpus:
            raise BlackboxCamError(f"--ray-gpus-per-worker {gpw:g}: the Ray cluster declares no GPU; leave it "
                                   "out (or 0) for CPU workers")
        most = int(math.floor(gpus / gpw + 1e-9))
        if most < 1 or (workers or most) > most:
            raise BlackboxCamError(f"--workers {workers or most} with --ray-gpus-per-worker {gpw:g} needs "
                                   f"{(workers or 1) * gpw:g} GPUs; the cluster has {gpus:g}")
        n = workers or most
        return WorkerPlan(n, min(1.0, cpus / n), gpw, "auto" if device in (None, "auto", "cpu") else device)
    n = workers or max(1, int(cpus))
    # CPU workers on a cluster with GPUs stay off the GPUs they did not declare
    return WorkerPlan(n, min(1.0, cpus / n), 0.0, "cpu" if gpus else None)


def start_ray(ray: Any, init_kwargs: dict[str, Any], where: str, *, timeout: float,
              clock: Any = time.monotonic) -> None:
    """``ray.init(**init_kwargs)``, tried again until ``timeout`` seconds have passed.

    Ray waits a fixed 30 s for its local raylet to register (``ray/_private/node.py``; no
    setting changes it), which a heavily loaded machine can miss, so a local start is retried
    while the deadline allows; its GCS port wait (``RAY_gcs_server_port_wait_time_s``) is raised
    to the same deadline. ``timeout=0``: one try (joining a cluster). The failure is one line
    that names the option.
    """
    deadline = clock() + timeout
    if timeout > 30:
        os.environ.setdefault("RAY_gcs_server_port_wait_time_s", str(int(timeout)))
    while True:
        try:
            ray.init(**init_kwargs)
            return
        except Exception as e:
            ray.shutdown()
            if clock() < deadline:
                continue
            hint = (f"a loaded machine may need a longer --ray-start-timeout (was {timeout:g} s), "
                    "or run without --ray") if timeout else "check the address, or run without --ray"
            raise BlackboxCamError(f"cannot start {where} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                                   f"{hint}") from None


def check_address(address: str, timeout: float = CONNECT_TIMEOUT) -> None:
    """Refuse, in one line and within ``timeout`` seconds, a cluster address nothing answers on
    (``ray.init`` itself would wait for minutes). ``auto`` and addresses without a port are
    left to Ray."""
    host_port = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise BlackboxCamError(f"--ray {address}: nothing answers at {host}:{port} ({e.strerror or e}); start the "
                               "cluster (ray start --head) or check the address, or run without --ray") from None


def _death_errors(ray: Any) -> tuple[type, ...]:
    """Ray's exceptions for a task whose worker process or node went away (worth a retry)."""
    names = ("RayActorError", "ActorDiedError", "WorkerCrashedError", "NodeDiedError", "ObjectLostError",
             "OwnerDiedError", "LocalRayletDiedError")
    return tuple(getattr(ray.exceptions, n) for n in names if hasattr(ray.exceptions, n))


class RayExecutor:
    """Runs :class:`Work` tasks on Ray actors (see the module docstring).

    Parameters
    ----------
    clf : the driver's classifier (its model file, sidecar and labels are shipped to workers).
    classifier_kwargs : the options it was built with (preprocess, layout, device, ...).
    address : ``None`` or ``"local"``: start a local Ray runtime sized to this machine (or
        ``num_cpus``); otherwise a cluster address (``ray://host:10001``, ``host:6379`` or
        ``auto``) to join. When Ray is already initialised in this process it is used as it is.
    num_cpus, num_gpus : resources of a local runtime (default: this machine's).
    workers, gpus_per_worker : see :func:`plan_workers`.
    start_timeout : seconds to keep trying to start a local runtime (see :func:`start_ray`).
    max_attempts : deaths of a worker on one task before it is recorded as failed.
    """

    remote = True

    def __init__(self, clf: Any, classifier_kwargs: dict[str, Any] | None = None, *, address: str | None = None,
                 num_cpus: int | None = None, num_gpus: int | None = None, workers: int | None = None,
                 gpus_per_worker: float | None = None, start_timeout: float = DEFAULT_START_TIMEOUT,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if workers is not None and workers < 1:
            raise BlackboxCamError(f"--workers {workers}: need at least 1 worker")
        try:
            import ray
        except ImportError:
            raise BlackboxCamError("--ray needs the ray package: pip install 'blackbox-cam[ray]'") from None
        self._ray = ray
        self._started = False
        self._actors: list[Any] = []
        self.retries = 0
        self.max_attempts = max(1, int(max_attempts))
        ckw = dict(classifier_kwargs or {})
        if address not in (None, "", "local", "auto"):
            check_address(address)   # also when Ray already runs here: a wrong address is said, not ignored
        if not ray.is_initialized():
            env = {"env_vars": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}
            local = address in (None, "", "local")
            if local:
                kwargs = dict(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False)
            else:
                kwargs = dict(address=address)
            start_ray(ray, dict(kwargs, log_to_driver=False, configure_logging=False, runtime_env=env),
                      "a local Ray runtime" if local else f"the Ray cluster at {address}",
                      timeout=start_timeout if local else 0.0)
            self._started = True
        try:
            self.plan = plan_workers(ray.cluster_resources(), workers, gpus_per_worker, ckw.get("device"))
        except BlackboxCamError:
            self.close()
            raise
        self.workers = self.plan.workers
        self._bundle = ray.put(ModelBundle.of(clf, ckw))
        self._actor = ray.remote(num_cpus=self.plan.num_cpus, num_gpus=self.plan.num_gpus, max_restarts=-1,
                                 max_task_retries=0)(_Worker)
        self._actors = [self._actor.remote(self._bundle, 1, self.plan.device) for _ in range(self.workers)]
        try:
            self.info = ray.get([a.ping.remote() for a in self._actors])
        except Exception as e:
            self.close()
            raise BlackboxCamError(f"Ray workers could not load {Path(clf.path).name} "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        self._deaths = _death_errors(ray)
        self._next = 0
        self._epoch = [0] * self.workers    # deaths seen per worker (see _settle)
        self._suspect: set[int] = set()     # workers that died and may still be restarting

    def pids(self) -> list[int]:
        """The worker processes' ids (as last reported; a restarted actor has a new one)."""
        return [int(i["pid"]) for i in self.info]

    def describe(self) -> list[str]:
        """One line per node: how many workers, on which GPUs, with which engine and batch."""
        nodes: dict[str, list[dict[str, Any]]] = {}
        for i in self.info:
            nodes.setdefault(i["host"] + (f" ({i['node'][:8]})" if i.get("node") else ""), []).append(i)
        lines = [f"Ray: {self.plan.describe()} on {len(nodes)} node(s)"]
        for node, infos in nodes.items():
            engines = sorted({f"{i['engine']}, batch {i['batch']}" for i in infos})
            gpus = sorted({g for i in infos for g in i["gpus"]})
            lines.append(f"  node {node}: {len(infos)} worker(s)" + (f" on GPU {','.join(gpus)}" if gpus else "")
                         + f": {'; '.join(engines)}")
        return lines

    def _submit(self, task: Work, avoid: int | None = None) -> list[Any]:
        """Send ``task`` to the next live worker (round robin, not ``avoid`` when another is
        live; a worker that died is first waited for until it has restarted). Returns the slot
        ``[task, ref, actor, epoch, attempts]``."""
        n = len(self._actors)
        order = [(self._next + k) % n for k in range(n)]
        self._next += 1
        live = [i for i in order if i not in self._suspect and (i != avoid or n == 1)]
        i = live[0] if live else next((j for j in order if self._ready(j)), None)
        if i is None:
            raise BlackboxCamError("no Ray worker came back after its process died; see the Ray logs "
                                   "(ray status, /tmp/ray/session_latest/logs)")
        return [task, self._actors[i].run.remote(task.fn, *task.args), i, self._epoch[i], 1]

    def _ready(self, i: int, timeout: float = 300.0) -> bool:
        """Wait until worker ``i`` answers again (Ray restarts an actor whose process died)."""
        ray = self._ray
        unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.info[i] = ray.get(self._actors[i].ping.remote(), timeout=60)
                self._suspect.discard(i)
                return True
            except unavailable:
                time.sleep(0.2)
            except ray.exceptions.GetTimeoutError:
                continue
            except self._deaths:
                time.sleep(0.2)
        return False

    def _settle(self, slot: list[Any]) -> Any:
        """The result of a slot, resending its task after a worker death.

        A worker runs its tasks one after the other, so when it dies, the first of its tasks that
        reports the death is the one it died on (``epoch``: the worker's deaths seen so far);
        that task is charged an attempt and the tasks queued behind it are sent again free of
        charge. After :attr:`max_attempts` charged deaths the task is :class:`Failed`."""
        task, ref, actor, epoch, attempts = slot
        unavailable = getattr(self._ray.exceptions, "ActorUnavailableError", ())
        while True:
            try:
                return self._ray.get(ref)
            except (unavailable, *self._deaths) as e:
                if self._epoch[actor] == epoch:      # the first to see this death: the one that ran
                    self._epoch[actor] += 1
                    self._suspect.add(actor)
                    if attempts >= self.max_attempts:
                        return Failed(f"{task.name or 'task'}: its Ray worker died {attempts} times on it "
                                      f"({type(e).__name__}); recorded as an error, the other images go on")
                    attempts += 1
                self.retries += 1
                _, ref, actor, epoch, _ = self._submit(task, avoid=actor)
            except self._ray.exceptions.RayTaskError as e:  # a unit raised (units return Failed for bad images)
                cause = getattr(e, "cause", None) or e
                return failed(task.name, cause)

    def imap(self, tasks: Iterable[tuple[Any, Ready | Work]]) -> Iterator[tuple[Any, Any]]:
        """Results in the order of ``tasks``, at most ``2 x workers`` tasks in flight and at most
        ``8 x workers`` results (known or awaited) held."""
        window: deque[tuple[Any, Any, bool]] = deque()
        limit = 2 * self.workers
        flying = 0
        for ctx, task in tasks:
            if isinstance(task, Ready):
                window.append((ctx, task.value, False))
            else:
                window.append((ctx, self._submit(task), True))
                flying += 1
            while flying >= limit or len(window) > 4 * limit or (window and not window[0][2]):
                c, v, is_ref = window.popleft()
                if is_ref:
                    flying -= 1
                    v = self._settle(v)
                yield c, v
        while window:
            c, v, is_ref = window.popleft()
            yield c, self._settle(v) if is_ref else v

    def close(self) -> None:
        ray = self._ray
        for a in self._actors:
            try:
                ray.kill(a)
            except Exception:
                pass
        self._actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def make_executor(clf: Any, classifier_kwargs: dict[str, Any] | None = None, ray: str | bool | None = None,
                  **ray_kwargs: Any) -> LocalExecutor | RayExecutor:
    """``ray=None``/``False``: in-process; ``True`` or ``"local"``: a local Ray runtime; anything
    else: a cluster address. ``ray_kwargs`` go to :class:`RayExecutor` (``workers``,
    ``gpus_per_worker``, ``start_timeout``, ...)."""
    if ray is None or ray is False:
        if ray_kwargs.get("workers") is not None or ray_kwargs.get("gpus_per_worker") is not None:
            raise BlackboxCamError("--workers and --ray-gpus-per-worker need --ray")
        return LocalExecutor(clf)
    return RayExecutor(clf, classifier_kwargs, address="local" if ray is True else ray, **ray_kwargs)


def run_summary(images: int, maps: int, errors: int, retries: int, seconds: float, workers: int,
                made: int | None = None, skipped: int = 0, what: str = "map") -> str:
    """The line a dataset command ends with: images, maps (made / from the cache), errors, retries,
    wall time and images per second per worker. ``what`` names the per-image outputs counted as
    maps (``detect``: overlays)."""
    rate = images / seconds / max(1, workers) if seconds > 0 else 0.0
    cached = f" ({made} made, {maps - made} from the cache)" if made is not None else ""
    skip = f", {skipped} non-image file(s) skipped" if skipped else ""
    return (f"{images} image(s), {maps} {what}(s){cached}, {errors} error(s), {retries} retr"
            f"{'y' if retries == 1 else 'ies'}{skip}; {seconds:.1f} s wall, {rate:.3g} images/s/worker "
            f"({workers} worker{'s' if workers != 1 else ''})")


__all__ = ["DEFAULT_START_TIMEOUT", "Failed", "ImageSource", "LocalExecutor", "MAX_ATTEMPTS", "ModelBundle",
           "RayExecutor", "Ready", "Work", "WorkerPlan", "check_address", "failed", "make_executor", "message",
           "plan_workers", "run_summary", "start_ray"]
