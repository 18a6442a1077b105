"""``animate`` (CAManim): one map per layer or per search step (:mod:`.job`) and the ybROAD
faithfulness curve through the layers (:mod:`.ybroad`)."""
from .job import animate, select_layers, write_animation

__all__ = ["animate", "select_layers", "write_animation"]
