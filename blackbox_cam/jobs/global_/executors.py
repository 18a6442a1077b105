"""Where per-image work runs: in this process, or as Ray tasks on a local runtime or a cluster.

Both executors take a stream of ``(context, task)`` pairs, where ``task`` is :class:`Ready`
(the result is already known, e.g. from the map cache) or :class:`Work` (a function of
:mod:`blackbox_cam.jobs.global_.units` and its arguments), and yield ``(context, result)`` **in the order
given**, so whatever consumes them (the streamed aggregation, the cache, the files) sees the same
sequence with or without Ray and a Ray run writes exactly what a serial run writes.

:class:`RayExecutor` uses Ray (https://www.ray.io), the existing distributed engine: one actor
per worker CPU, each holding one :class:`~blackbox_cam.model.runtime.Classifier` (one ONNX Runtime
session with one intra-op thread) built from the model's bytes, so workers on other machines need
neither the model file nor the images on a shared disk. At most ``2 x workers`` tasks are in
flight (memory stays bounded whatever the number of images); results come back as they are
consumed.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from ...errors import BlackboxCamError


@dataclass(frozen=True)
class Ready:
    """A task whose result is already known."""

    value: Any


@dataclass(frozen=True)
class Work:
    """``fn(clf, *args)``, ``fn`` a module-level function (so Ray can ship it by reference)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]


class LocalExecutor:
    """Runs every task here, in order, on ``clf``."""

    workers = 1
    remote = False

    def __init__(self, clf: Any) -> None:
        self.clf = clf

    def imap(self, tasks: Iterable[tuple[Any, Ready | Work]]) -> Iterator[tuple[Any, Any]]:
        for ctx, task in tasks:
            yield ctx, task.value if isinstance(task, Ready) else task.fn(self.clf, *task.args)

    def close(self) -> None:
        pass


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

    @classmethod
    def of(cls, clf: Any, kwargs: dict[str, Any]) -> "ModelBundle":
        path = Path(clf.path)
        side = getattr(clf, "sidecar_file", None) or path.with_suffix(".json")
        kw = {k: v for k, v in kwargs.items() if k not in ("labels", "sidecar") and v is not None}
        return cls(path.name, path.read_bytes(), Path(side).read_bytes() if Path(side).is_file() else None,
                   tuple(clf.labels) if clf.labels else None, tuple(sorted(kw.items())))

    def build(self, threads: int | None = 1) -> Any:
        """A :class:`~blackbox_cam.model.runtime.Classifier` in a private folder of this process."""
        from ...model import runtime
        d = Path(tempfile.mkdtemp(prefix="bbcam-worker-"))
        model = d / self.name
        model.write_bytes(self.model)
        if self.sidecar is not None:
            model.with_suffix(".json").write_bytes(self.sidecar)
        kwargs = dict(self.kwargs)
        if self.labels is not None:
            (d / "labels.txt").write_text("\n".join(self.labels) + "\n", encoding="utf-8")
            kwargs["labels"] = d / "labels.txt"
        if threads:
            _limit_session_threads(threads)
        return runtime.Classifier(model, **kwargs)


def _limit_session_threads(threads: int) -> None:
    """In a worker process only: every compiled model (the classifier's and the gradient graph's)
    gets ``threads`` intra-op threads. One worker runs per CPU; ONNX Runtime's default of one
    thread per core in every worker would oversubscribe the machine."""
    from ...model import backends, runtime
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

    def __init__(self, bundle: ModelBundle, threads: int) -> None:
        self.clf = bundle.build(threads)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.clf, *args)

    def ping(self) -> bool:
        return True


#: Seconds ``--ray`` keeps trying to start a local Ray runtime (``--ray-start-timeout``).
DEFAULT_START_TIMEOUT = 90.0


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


class RayExecutor:
    """Runs :class:`Work` tasks on Ray actors (see the module docstring).

    Parameters
    ----------
    clf : the driver's classifier (its model file, sidecar and labels are shipped to workers).
    classifier_kwargs : the options it was built with (preprocess, layout, device, ...).
    address : ``None`` or ``"local"``: start a local Ray runtime sized to this machine (or
        ``num_cpus``); otherwise a cluster address (``ray://host:10001``, ``host:6379`` or
        ``auto``) to join.
    num_cpus : CPUs of the local runtime (default: all of this machine's).
    workers : actors to start (default: the cluster's CPUs).
    start_timeout : seconds to keep trying to start a local runtime (see :func:`start_ray`).
    """

    remote = True

    def __init__(self, clf: Any, classifier_kwargs: dict[str, Any] | None = None, *, address: str | None = None,
                 num_cpus: int | None = None, workers: int | None = None,
                 start_timeout: float = DEFAULT_START_TIMEOUT) -> None:
        try:
            import ray
        except ImportError:
            raise BlackboxCamError("--ray needs the ray package: pip install 'blackbox-cam[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            env = {"env_vars": {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}}
            local = address in (None, "", "local")
            if local:
                kwargs = dict(num_cpus=num_cpus, include_dashboard=False)
            else:
                kwargs = dict(address=address)
            start_ray(ray, dict(kwargs, log_to_driver=False, configure_logging=False, runtime_env=env),
                      "a local Ray runtime" if local else f"the Ray cluster at {address}",
                      timeout=start_timeout if local else 0.0)
            self._started = True
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = max(1, int(workers or cpus))
        bundle = ray.put(ModelBundle.of(clf, classifier_kwargs or {}))
        actor = ray.remote(num_cpus=min(1, cpus / self.workers))(_Worker)
        self._actors = [actor.remote(bundle, 1) for _ in range(self.workers)]
        try:
            ray.get([a.ping.remote() for a in self._actors])
        except Exception as e:
            self.close()
            raise BlackboxCamError(f"Ray workers could not load {Path(clf.path).name} "
                                   f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
        self._next = 0

    def imap(self, tasks: Iterable[tuple[Any, Ready | Work]]) -> Iterator[tuple[Any, Any]]:
        """Results in the order of ``tasks``, at most ``2 x workers`` tasks in flight."""
        ray = self._ray
        window: deque[tuple[Any, Any, bool]] = deque()
        limit = 2 * self.workers
        flying = 0
        for ctx, task in tasks:
            if isinstance(task, Ready):
                window.append((ctx, task.value, False))
            else:
                actor = self._actors[self._next % len(self._actors)]
                self._next += 1
                window.append((ctx, actor.run.remote(task.fn, *task.args), True))
                flying += 1
            while flying >= limit or (window and not window[0][2]):
                c, v, is_ref = window.popleft()
                if is_ref:
                    flying -= 1
                    v = ray.get(v)
                yield c, v
        while window:
            c, v, is_ref = window.popleft()
            yield c, ray.get(v) if is_ref else v

    def close(self) -> None:
        ray = self._ray
        for a in getattr(self, "_actors", []):
            try:
                ray.kill(a)
            except Exception:
                pass
        self._actors = []
        if self._started and ray.is_initialized():
            ray.shutdown()
            self._started = False


def make_executor(clf: Any, classifier_kwargs: dict[str, Any] | None = None, ray: str | None = None,
                  **ray_kwargs: Any) -> LocalExecutor | RayExecutor:
    """``ray=None``: in-process; ``"local"``: a local Ray runtime; anything else: a cluster address."""
    if ray is None:
        return LocalExecutor(clf)
    return RayExecutor(clf, classifier_kwargs, address=ray, **ray_kwargs)


__all__ = ["LocalExecutor", "ModelBundle", "RayExecutor", "Ready", "Work", "make_executor"]
