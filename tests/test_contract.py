"""The method contract: options declared once, checked before any query, one Explanation builder."""
from __future__ import annotations

import dataclasses
import inspect
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from blackbox_cam import BlackboxCamError, explain_image
from blackbox_cam.cli import main
from blackbox_cam.methods import METHODS, bind_all, get_method


@pytest.fixture()
def image(heldout):
    return heldout["images"][0].astype(np.float32)


@pytest.fixture()
def png(tmp_path, heldout):
    p = tmp_path / "rgb.png"
    Image.fromarray(heldout["images"][0]).save(p)
    return p


@pytest.fixture()
def counted(monkeypatch):
    """Every image any Classifier scores, however it was created (the CLI makes its own)."""
    from blackbox_cam.model.runtime import Classifier
    seen = {"images": 0}
    scores = Classifier.scores

    def counting(self, x):
        seen["images"] += len(np.asarray(x).reshape(-1, *np.asarray(x).shape[-3:]))
        return scores(self, x)

    monkeypatch.setattr(Classifier, "scores", counting)
    return seen


# -- the API ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, options, message", [
    ("decam", {"gird": 4}, "unknown option 'gird'; did you mean 'grid'?"),
    ("decam", {"windw": 4}, "unknown option 'windw'; did you mean 'window'?"),
    ("decam", {"window": 4}, "--window is not an option of decam; it is taken by occlusion"),
    ("occlusion", {"grid": 4}, "--grid is not an option of occlusion; it is taken by decam, rise"),
    ("gradcam", {"baseline": "blur"}, "--baseline is not an option of gradcam; it is taken by decam, occlusion, rise"),
    ("decam", {"grid": 1}, "--grid 1 is out of range for decam: must be between 2 and 64 (the model's input side)"),
    ("rise", {"grid": 65}, "--grid 65 is out of range for rise: must be between 2 and 64"),
    ("rise", {"p": 1.5}, "--keep-probability 1.5 is out of range for rise: must be between 0.01 and 1"),
    ("decam", {"aggregate": "bset"}, "--aggregate 'bset' is not valid for decam: choose one of combined, "
                                     "regression, elite, best; did you mean 'best'?"),
    ("decam", {"grid": 2.5}, "must be a whole number"),
    ("occlusion", {"baseline": "zero"}, "did you mean 'zeros'?"),
])
def test_bad_option_is_refused_before_any_query(planted, image, method, options, message):
    q0 = planted.queries
    with pytest.raises(BlackboxCamError) as e:
        explain_image(planted, image, method, budget=50, **options)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert planted.queries == q0


def test_budget_too_small_names_the_budget_given(planted, image):
    """Regression: ``--budget 10`` for decam said "--budget 9 is too small ... needs at least 10"."""
    q0 = planted.queries
    with pytest.raises(BlackboxCamError, match=r"^--budget 10 is too small for decam: it needs at least 11 model "
                                               r"queries \(the unmasked prediction included\)$"):
        explain_image(planted, image, "decam", budget=10)
    assert planted.queries == q0
    assert explain_image(planted, image, "decam", budget=11).explanation.queries == 11


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_budget_must_be_a_positive_whole_number(budget):
    with pytest.raises(BlackboxCamError, match="--budget must be a positive number of model queries"):
        get_method("rise").check_budget(budget)


def test_default_budget_is_applied_in_one_place():
    for spec in METHODS.values():
        want = None if spec.whitebox else spec.default_budget
        assert spec.check_budget(None) == want
        assert spec.bind().budget == want


def test_no_method_swallows_unknown_keywords():
    """Regression: ``**_`` in every method let ``explain_image(clf, x, "decam", windw=3)`` run."""
    for name, spec in METHODS.items():
        params = inspect.signature(spec.hook).parameters
        assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), name
        keywords = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
        anytime = {"auto"} if spec.anytime else set()  # --budget auto's stop rule (methods/uncertainty.py)
        assert keywords == {"budget", "seed", "score", *spec.option_names, *anytime}, name


def test_every_option_declares_a_default_help_and_valid_values():
    for spec in METHODS.values():
        for opt in spec.options:
            assert opt.help and opt.type in (int, float, str, bool), (spec.name, opt.name)
            if opt.default is not None:
                assert opt.check(spec.name, opt.default) == opt.default


def test_explanation_is_built_once_with_the_users_budget_and_score(planted, image):
    """Regression: explain_image patched queries, score and params["budget"] after the method."""
    q0 = planted.queries
    res = explain_image(planted, image, "rise", budget=40, seed=3, grid=5)
    ex = res.explanation
    assert ex.queries == planted.queries - q0 == 40
    assert ex.params == {"budget": 40, "seed": 3, "grid": 5, "p": 0.5, "baseline": "zeros"}
    probs = planted.probabilities(planted.prepare(image)[None])[0]
    assert ex.score == pytest.approx(float(probs[ex.target])) and np.isfinite(ex.score)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.queries = 0  # nothing patches it afterwards


def test_method_fn_checks_options_and_returns_a_complete_explanation(planted, image):
    """``METHODS[name].fn(clf, x, target, budget=..., seed=..., **options)`` stays the direct entry."""
    x = planted.prepare(image)
    q0 = planted.queries
    with pytest.raises(BlackboxCamError, match="did you mean 'window'"):
        METHODS["occlusion"].fn(planted, x, 0, budget=30, seed=0, windw=8)
    assert planted.queries == q0
    ex = METHODS["occlusion"].fn(planted, x, 0, budget=30, seed=0, window=8)
    assert ex.queries == planted.queries - q0 == ex.params["windows"] + 1 <= 30
    assert ex.params["window"] == 8 and np.isfinite(ex.score)


def test_whitebox_queries_are_counted_truthfully_with_one_forward_pass(planted, image):
    """Regression: the docstring said queries is 0, explain.json said 1, and gradcam._probability ran
    a second forward pass whose result explain_image overwrote."""
    runs = {"n": 0}
    session_run = planted.session.run

    def counting(*a, **k):
        runs["n"] += 1
        return session_run(*a, **k)

    planted.session.run = counting
    try:
        q0 = planted.queries
        res = explain_image(planted, image, "gradcam")
    finally:
        del planted.session.run
    assert res.explanation.queries == planted.queries - q0 == 1
    assert runs["n"] == 1  # the unmasked prediction; the gradient model has its own session
    assert "budget" not in res.explanation.params


def test_decam_trace_still_records_every_generation(planted, image):
    res = explain_image(planted, image, "decam", budget=101, trace=True)
    trace = res.explanation.extra["trace"]
    assert trace and trace[-1]["saliency"].dtype == np.float32
    np.testing.assert_array_equal(trace[-1]["saliency"], res.explanation.saliency)


def test_bind_all_gives_each_method_only_its_own_options():
    calls = bind_all(["decam", "occlusion"], 100, {"grid": 6, "window": 4})
    assert calls["decam"].options["grid"] == 6 and "window" not in calls["decam"].options
    assert calls["occlusion"].options["window"] == 4 and "grid" not in calls["occlusion"].options
    with pytest.raises(BlackboxCamError, match="--layer is not an option of decam, occlusion; it is taken by gradcam"):
        bind_all(["decam", "occlusion"], 100, {"layer": "auto"})


# -- the CLI ---------------------------------------------------------------------------------------
def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.mark.parametrize("args, message", [
    (["-m", "decam", "--windw", "3"], "No such option '--windw'. (Did you mean one of: '--grid', '--window'?)"),
    (["-m", "decam", "--window", "3"], "--window is not an option of decam; it is taken by occlusion"),
    (["-m", "occlusion", "--grid", "3"], "--grid is not an option of occlusion; it is taken by decam, rise"),
    (["-m", "decam", "--grid", "1"], "--grid 1 is out of range for decam: must be between 2"),
    (["-m", "decam", "--grid", "65"], "--grid 65 is out of range for decam: must be between 2 and 64"),
    (["-m", "rise", "--keep-probability", "0"], "out of range for rise: must be between 0.01 and 1"),
    (["-m", "decam", "--aggregate", "bset"], "did you mean 'best'?"),
    (["-m", "decam", "--budget", "10"], "--budget 10 is too small for decam: it needs at least 11"),
    (["-m", "decm"], "'decm' is not a method; choose from"),
    (["-m", "decam", "--grid", "x"], "'x' is not a valid integer"),
])
@pytest.mark.parametrize("command", ["explain", "compare"])
def test_cli_bad_option_is_one_line_exit_2_before_any_query(tmp_path, planted_path, png, counted, command,
                                                          args, message):
    r = _run(command, planted_path, png, "--out", tmp_path / "o", *args)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], r.output
    assert counted["images"] == 0
    assert not (tmp_path / "o" / "explain.json").exists()


def test_cli_method_options_reach_the_methods_that_take_them(tmp_path, planted_path, png):
    r = _run("explain", planted_path, png, "--methods", "rise,occlusion", "--grid", "5", "--window", "16",
             "--budget", "30", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    recs = {rec["method"]: rec for rec in json.loads((tmp_path / "explain.json").read_text())}
    assert recs["rise"]["params"]["grid"] == 5 and "window" not in recs["rise"]["params"]
    assert recs["occlusion"]["params"]["window"] == 16 and "grid" not in recs["occlusion"]["params"]


def test_cli_old_method_spelling_still_works(tmp_path, planted_path, png):
    r = _run("explain", planted_path, png, "--method", "occlusion", "--budget", "20", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert [rec["method"] for rec in json.loads((tmp_path / "explain.json").read_text())] == ["occlusion"]


def test_cli_explain_scores_each_image_once_for_all_methods(tmp_path, planted_path, png, counted):
    """Regression: every method re-scored the unmasked image (and resolved the target again)."""
    r = _run("explain", planted_path, png, "-m", "rise,occlusion", "--budget", "20", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    recs = json.loads((tmp_path / "explain.json").read_text())
    assert counted["images"] == sum(rec["queries"] for rec in recs) - (len(recs) - 1)


def test_compare_resolves_the_target_and_scores_the_image_once(planted, heldout, tmp_path, monkeypatch):
    """Regression: compare scored and resolved each image once, then explain_image did it again per method."""
    from blackbox_cam.jobs.compare import job as cmp
    from blackbox_cam.explainer import pipeline as ex
    p = tmp_path / "a.png"
    Image.fromarray(heldout["images"][1]).save(p)
    resolved = {"n": 0}
    for mod in (cmp, ex):
        real = mod.resolve_target
        monkeypatch.setattr(mod, "resolve_target", lambda *a, _r=real, **k: (resolved.__setitem__(
            "n", resolved["n"] + 1), _r(*a, **k))[1])
    x = planted.prepare(np.asarray(Image.open(p).convert("RGB"), np.float32))
    unmasked = {"n": 0}
    probabilities = planted.probabilities

    def counting(batch):
        batch = np.asarray(batch)
        unmasked["n"] += int(sum(np.array_equal(b, x) for b in batch.reshape(-1, *x.shape)) if len(batch) == 1 else 0)
        return probabilities(batch)

    monkeypatch.setattr(planted, "probabilities", counting)
    monkeypatch.setattr(cmp, "score_map", lambda *a, **k: {"deletion_auc": 0.0, "insertion_auc": 0.0})
    res = cmp.compare_images(planted, [p], ["rise", "occlusion"], budget=20,
                             settings=cmp.MetricSettings(road=False))
    assert len(res.rows) == 2 and not res.failures
    assert resolved["n"] == 1 and unmasked["n"] == 1


def test_help_lists_methods_budgets_and_options_from_the_registry():
    r = _run("--help")
    assert r.exit_code == 0 and all(name in r.output for name in METHODS)
    for command in ("explain", "compare"):
        text = " ".join(_run(command, "--help").output.split())
        assert "-m, --methods" in text
        for spec in METHODS.values():
            if spec.default_budget:
                assert f"{spec.name} {spec.default_budget}" in text, (command, spec.name)
            for opt in spec.options:
                assert (opt.cli_flag in text) == opt.cli, (command, opt.cli_flag)
