"""Commands' work over many images, one folder per command that has more than one module.

* :mod:`.dataset` -- inputs (files, folders, manifests), ground truth and the map cache, shared
  by every job;
* :mod:`.compare` (scores and the HTML report), :mod:`.gate` (the CI heat-map gate, regions,
  JUnit), :mod:`.global_` (dataset-level maps, PEPPR, executors), :mod:`.animate` (CAManim,
  ybROAD), :mod:`.verify` (the model's scores under our preprocessing against the vendor's). A job imports :mod:`.dataset` and the layers below, never another job.
"""
