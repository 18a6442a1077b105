"""The pipeline a user calls for one image: score it, resolve the target, run one method's
:class:`~blackbox_cam.methods.Call`, map the result back to the image (:mod:`.pipeline`)."""
from .pipeline import Result, Scored, explain_image, explain_scored, resolve_target, score_image

__all__ = ["Result", "Scored", "explain_image", "explain_scored", "resolve_target", "score_image"]
