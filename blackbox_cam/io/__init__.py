"""Images in, files out: reading and resizing images (:mod:`.images`) and atomic, lock-merged
writes of maps, pictures and records (:mod:`.output`). Imports nothing above :mod:`blackbox_cam.errors`."""
