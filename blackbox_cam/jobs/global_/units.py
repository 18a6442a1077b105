"""Per-image work units of dataset jobs, the same in-process and on a Ray worker.

A dataset job (``blackbox-cam global``) splits into per-image units that need only a
:class:`~blackbox_cam.model.runtime.Classifier` and the image: :func:`map_unit` (one method's map) and
:func:`curves_unit` (PEPPR curves for several rankings). :mod:`blackbox_cam.jobs.executors` runs them
in-process or as Ray tasks; both call these functions, so a Ray run gives the same maps as a
serial one. The image travels as an :class:`ImageSource`: a path (in-process) or the file's bytes
(Ray, so workers on other machines need no shared file system).

A unit never raises for a bad image or a refused option: it returns a :class:`Failed` with the
one-line message, so a batch records it and goes on.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..dataset import CachedMap, MapCache
from ..executors import Failed, ImageSource, message


@dataclass(frozen=True)
class MapJob:
    """One map to make: ``method`` with its effective ``budget`` and ``options`` (from a checked
    :class:`~blackbox_cam.methods.Call`), explaining ``target`` (None: the top-1 class)."""

    method: str
    target: int | None
    budget: int | None
    seed: int
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def of(cls, call: Any, target: int | None, seed: int) -> "MapJob":
        return cls(call.spec.name, target, call.budget, seed, tuple(sorted(call.options.items())))

    def key(self, cache: MapCache, digest: str) -> str:
        """The cache key, the same one :func:`blackbox_cam.jobs.dataset.explain_cached` uses."""
        return cache.key(digest, self.method, target=self.target, budget=self.budget, seed=self.seed,
                         options=dict(self.options))


def map_unit(clf: Any, source: ImageSource, job: MapJob) -> CachedMap | Failed:
    """Explain one image: the map at the model input size and what it was made for."""
    from ...explainer.pipeline import explain_image
    try:
        image = source.load()
        res = explain_image(clf, image, job.method, target=job.target, budget=job.budget, seed=job.seed,
                            **dict(job.options))
    except Exception as e:  # a bad image or method failure is recorded; the batch goes on
        return Failed(f"{source.name}: {message(e)}" if source.name not in message(e) else message(e))
    ex = res.explanation
    return CachedMap(np.asarray(ex.saliency, np.float32), res.target, res.score, res.predicted,
                     res.predicted_score, ex.queries, ex.seconds, dict(ex.params), ex.method)


def curves_unit(clf: Any, source: ImageSource, target: int, steps: int, ranks: dict[str, np.ndarray]
                ) -> np.ndarray | Failed:
    """PEPPR erase/restore curves of one image for each ranking: ``(len(ranks), 2, steps)`` in
    the order of ``ranks``."""
    from ...metrics import peppr
    try:
        x = clf.prepare(source.load())
        fr = peppr.fractions(steps)
        out = np.stack([np.stack(peppr.curves(clf.probabilities, x, r, target, fr, batch_size=clf.batch_size))
                        for r in ranks.values()])
    except Exception as e:
        return Failed(f"{source.name}: {message(e)}" if source.name not in message(e) else message(e))
    return out
