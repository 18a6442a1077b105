"""Gradient-weighted attention relevance (Chefer, Gur & Wolf, ICCV 2021, "Generic
attention-model explainability"), for self-attention in a vision transformer.

[1] eq. 5: per block, the heads' attention weighted by its gradient, positive part, averaged over
heads: ``A_bar = E_h[(dY/dA (.) A)^+]``; eq. 6: the relevance of the tokens to each other starts
as the identity and is updated block by block, ``R <- R + A_bar @ R``. The map is the class
token's row of ``R`` at the patch tokens (:func:`blackbox_cam.methods._attention.relevance_map`).
Class-specific through the gradient of the target's score (its probability for a model that ends
in a Softmax). White-box: attention and gradients from the ONNX graph; no budget.

References
----------
.. [1] H. Chefer, S. Gur, L. Wolf, "Generic Attention-model Explainability for Interpreting
   Bi-Modal and Encoder-Decoder Transformers", ICCV 2021 (arXiv:2103.15679).
"""
from __future__ import annotations

import numpy as np

from ._attention import attentions, check_attention, relevance_map
from .base import MethodOutput, register
from .gradcam import TOKENS_OPTION


def relevance_matrix(pairs) -> np.ndarray:
    """[1] eq. 5-6 on ``(A, dY/dA)`` pairs of ``[heads, T, T]``, first block first."""
    T = pairs[0][0].shape[-1]
    R = np.eye(T)
    for A, G in pairs:
        a_bar = np.maximum(G * A, 0).mean(axis=0)
        R = R + a_bar @ R
    return R


@register("attention-grad", whitebox=True, check=check_attention, options=(TOKENS_OPTION,),
          summary="Gradient-weighted attention relevance (Chefer, Gur & Wolf 2021), accumulated "
                  "through the blocks")
def attention_grad(clf, x: np.ndarray, target: int, *, budget: None, seed: int, score: float,
                   tokens: str = "auto") -> MethodOutput:
    """Chefer et al.'s generic attention explainability for a vision transformer's ONNX graph."""
    pairs, facts = attentions(clf, x, target, tokens)
    sal, raw = relevance_map(relevance_matrix(pairs), facts, clf.input_size)
    return MethodOutput(sal, {"blocks": len(pairs), "token_grid": facts.grid.label()}, {"cam": raw})
