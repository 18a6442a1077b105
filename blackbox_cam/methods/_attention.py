"""What the attention methods share: the attention probabilities of every block and their
gradients from one run of the gradient graph, and the row of the relevance matrix to show.

The attention Softmax outputs ``[N, heads, T, T]`` (one per block, found by
:func:`blackbox_cam.gradients.token_facts`) are differentiated like any layer; one run returns
each block's attention ``A`` and ``dY/dA`` (``Y``: the target's score, or its probability for a
model that ends in a Softmax, as for Grad-CAM). A method turns the list into a ``T x T``
relevance matrix ``R``; the map is the row of the token(s) the head reads, at the patch columns,
reshaped to the patch grid: the class token's row (row 0) when the model has extra tokens, else
the mean of all rows (a head that averages the tokens reads each of them equally).
"""
from __future__ import annotations

import numpy as np

from ..errors import BlackboxCamError
from . import cams
from .gradcam import _compile_gradient_graph, _gradients, _run, _state, token_facts


def check_attention(clf, options) -> None:
    """Before any image: the model has global self-attention over its patch tokens."""
    facts = token_facts(clf, options.get("tokens", "auto"))
    if facts.grid is None:
        raise BlackboxCamError("the model has no patch tokens (no patch-embedding Conv followed by a flatten "
                               "and transpose), so there is no attention to explain with; give the grid with "
                               "--tokens H,W[,EXTRA] or use gradcam or a black-box method")
    if not facts.attention:
        raise BlackboxCamError(f"the model's tokens ({facts.grid.label()}) have no global attention: no Softmax "
                               f"over all {facts.grid.tokens} tokens (windowed attention, as in Swin, is not "
                               "supported); use gradcam or a black-box method")


def attention_run(clf, tokens: str | None) -> dict:
    """Cached: a gradient graph whose outputs are every block's attention and its gradient."""
    st = _state(clf, tokens)
    key = ("attention", st["tokens_key"])
    run = st["runs"].get(key)
    if run is None:
        names = list(st["facts"].attention)
        gm = _gradients().build_gradient_model(st["model"], names, signature=clf.signature)
        outputs = [t for n in names for t in (gm.activation_names[n], gm.gradient_names[n])]
        run = {"session": _compile_gradient_graph(clf, gm.model), "model": gm.model, "seed": gm.seed_name,
               "outputs": outputs, "facts": st["facts"]}
        st["runs"][key] = run
    return run


def attentions(clf, x: np.ndarray, target: int, tokens: str | None):
    """``[(A, G), ...]`` per block, each ``[heads, T, T]`` float64, and the token facts."""
    run = attention_run(clf, tokens)
    outs = _run(clf, run, x[None], [target])
    pairs = [(np.asarray(outs[i][0], np.float64), np.asarray(outs[i + 1][0], np.float64))
             for i in range(0, len(outs), 2)]
    return pairs, run["facts"]


def relevance_map(R: np.ndarray, facts, size) -> tuple[np.ndarray, np.ndarray]:
    """The read row of ``R`` at the patch columns: ``(map at size in [0, 1], raw h x w map)``."""
    grid = facts.grid
    if grid.layout != "NTC":
        raise BlackboxCamError("attention maps need [N, T, C] tokens")
    row = R[0] if grid.extra else R.mean(axis=0)
    raw = row[grid.extra:grid.tokens].reshape(grid.h, grid.w).astype(np.float32)
    return cams.upsample_cams(np.maximum(raw, 0)[None], tuple(size))[0], raw
