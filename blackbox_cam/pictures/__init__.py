"""Drawing, with no knowledge of models or methods: heat-map overlays and panels
(:mod:`.render`), GIF/MP4 movies (:mod:`.movie`), and the mixin that lets a result show its
picture in a notebook (:mod:`.display`). A command's own figures live with the command
under :mod:`blackbox_cam.jobs`."""
