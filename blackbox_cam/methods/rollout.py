"""Attention rollout (Abnar & Zuidema, ACL 2020): how much each input token flows into the class
token when attention is followed through every block, the residual connection included.

[1] Sec. 3 ("attention rollout"): per block, heads averaged and the residual added as identity,
``A_hat = 0.5 * mean_h(A) + 0.5 * I`` (rows renormalised to sum to 1);
``R = A_hat_L @ ... @ A_hat_1``; the map is the class token's row of ``R`` at the patch tokens
(:func:`blackbox_cam.methods._attention.relevance_map`). Class-agnostic: it reads the forward
attention only, so every target gets the same map. White-box (the attention tensors are read from
the ONNX graph); no budget.

References
----------
.. [1] S. Abnar, W. Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020
   (arXiv:2005.00928).
"""
from __future__ import annotations

import numpy as np

from ._attention import attentions, check_attention, relevance_map
from .base import MethodOutput, register
from .gradcam import TOKENS_OPTION


def rollout_matrix(As) -> np.ndarray:
    """[1] Sec. 3 on ``[heads, T, T]`` attentions, first block first: ``prod_l (0.5 mean_h A_l + 0.5 I)``."""
    T = As[0].shape[-1]
    R = np.eye(T)
    for A in As:
        a = 0.5 * A.mean(axis=0) + 0.5 * np.eye(T)
        a /= a.sum(axis=-1, keepdims=True)
        R = a @ R
    return R


@register("rollout", whitebox=True, check=check_attention, options=(TOKENS_OPTION,),
          summary="Attention rollout (Abnar & Zuidema 2020): attention multiplied through the blocks, "
                  "residual included")
def rollout(clf, x: np.ndarray, target: int, *, budget: None, seed: int, score: float,
            tokens: str = "auto") -> MethodOutput:
    """Attention rollout of a vision transformer read from its ONNX graph (class-agnostic)."""
    pairs, facts = attentions(clf, x, target, tokens)
    sal, raw = relevance_map(rollout_matrix([A for A, _ in pairs]), facts, clf.input_size)
    return MethodOutput(sal, {"blocks": len(pairs), "token_grid": facts.grid.label()}, {"cam": raw})
