"""Monitoring on logs written by the server's own log writer: drift flags exactly the moved
features and the predictions, a quiet window passes, labels give scikit-learn's accuracy,
each version is judged on its own, and the finding is recorded against the environment."""

from __future__ import annotations

import pytest

from cd4ml.watch.monitor import MonitorConfig, monitor
from cd4ml.watch.window import window
from tests.watch_world import SHIFTED, make_world, shifted


@pytest.fixture
def world(spec, store):
    return make_world(spec, store)


def watch(world, *logs, **kw):
    return monitor(world.spec, world.store, MonitorConfig(
        "production", window("1h"), logs=tuple(str(p) for p in logs), scrape=False, **kw))


def test_a_normal_window_passes(world, tmp_path):
    log = tmp_path / "p.jsonl"
    world.log(log, 1, world.frame)
    result = watch(world, log)
    (v,) = result.versions
    assert (v.model_version, v.rows, v.requests) == (1, len(world.frame), len(world.frame))
    assert v.judged and not v.breaches and not result.breached
    assert not [d.feature for d in v.drift if d.drifted]
    assert v.prediction_drift is not None and not v.prediction_drift.drifted
    assert v.estimate is not None and 0.5 < v.estimate.accuracy <= 1


def test_two_shifted_features_and_the_predictions_are_flagged(world, tmp_path):
    log = tmp_path / "p.jsonl"
    world.log(log, 1, shifted(world.frame))
    (v,) = watch(world, log).versions
    assert sorted(d.feature for d in v.drift if d.drifted) == sorted(SHIFTED)
    assert v.prediction_drift.drifted
    assert len(v.breaches) == 3
    quality = {q.feature: q for q in v.quality}
    assert quality["proline"].below_min > 0 and quality["alcohol"].below_min == 0


def test_labels_give_scikit_learns_accuracy(world, tmp_path):
    from sklearn.metrics import accuracy_score

    from cd4ml.watch.labels import LabelsConfig, add_labels

    log = tmp_path / "p.jsonl"
    rows = shifted(world.frame)  # a window where the model errs sometimes
    ids = world.log(log, 1, rows)
    part = rows.iloc[::3]
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label,alcohol_level\n" + "".join(
        f"{ids[i]},{rows['target'].iloc[i]},{rows['alcohol_level'].iloc[i]}\n"
        for i in range(0, len(rows), 3)))
    added = add_labels(world.spec, world.store, LabelsConfig(labels, logs=(str(log),)))
    assert (added.added, added.problems) == (len(part), ())
    (v,) = watch(world, log).versions
    est = world.estimator(1)
    names = [i["name"] for i in world.models[1].signature["inputs"]]
    expected = accuracy_score(part["target"], est.predict(part[names]))
    overall = next(r for r in v.realised if r.metric == "accuracy" and r.slice is None)
    assert overall.rows == len(part) and overall.value == pytest.approx(expected, abs=1e-12)
    assert overall.low <= overall.value <= overall.high
    by_slice = {r.slice_value: r for r in v.realised if r.metric == "accuracy" and r.slice}
    assert sum(r.rows for r in by_slice.values()) == len(part)
    for value, r in by_slice.items():
        mask = part["alcohol_level"] == value
        assert r.value == pytest.approx(accuracy_score(part["target"][mask],
                                                       est.predict(part[names][mask])))


def test_versions_are_reported_separately_and_recorded(spec, store, tmp_path):
    world = make_world(spec, store, versions=(1, 2))
    log = tmp_path / "p.jsonl"
    rows = world.frame.sample(frac=1.0, random_state=0)  # the CSV is sorted by cultivar
    world.log(log, 1, rows.iloc[:100])
    world.log(log, 2, shifted(rows.iloc[100:]))  # deployed mid-window, on shifted data
    result = watch(world, log)
    assert [(v.model_version, v.rows) for v in result.versions] == [(1, 100), (2, 78)]
    assert not result.versions[0].breaches and result.versions[1].breaches
    kept = store.monitorings(pipeline="wine", environment="production")
    assert sorted((store.model_by_id(m.model_version_id).version, m.breached) for m in kept) == [
        (1, False), (2, True)]
    assert kept[0].findings["breaches"] == list(result.versions[1].breaches)


def test_too_few_rows_are_shown_not_judged(world, tmp_path):
    log = tmp_path / "p.jsonl"
    world.log(log, 1, shifted(world.frame.iloc[:10]))
    (v,) = watch(world, log).versions
    assert not v.judged and not v.breaches
    assert any("min_rows" in n for n in v.notes)


def test_several_readers_find_what_one_finds(spec, tmp_path):
    from dataclasses import replace

    from cd4ml.store import Store

    with Store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        world = make_world(spec, store, versions=(1, 2))
        log = tmp_path / "p.jsonl"
        rows = world.frame.sample(frac=1.0, random_state=0)
        ids = world.log(log, 1, rows.iloc[:120])
        world.log(log, 2, shifted(rows.iloc[120:]))
        ids += world.log(log, 1, rows.iloc[120:])
        with log.open("a") as f:
            f.write("not json\n")
        labels = tmp_path / "labels.csv"
        labels.write_text("request_id,label\n" + "".join(
            f"{rid},{target}\n" for rid, target in zip(ids, rows["target"], strict=True)))
        from cd4ml.watch.labels import LabelsConfig, add_labels

        assert add_labels(spec, store, LabelsConfig(labels, logs=(str(log),))).added == len(ids)
        one, three = (watch(world, log, workers=n, record=False) for n in (1, 3))
    assert one.versions[0].realised[0].rows == len(ids)
    assert one.log["lines"] == three.log["lines"] and one.log["not_json"] == three.log["not_json"]
    for a, b in zip(one.versions, three.versions, strict=True):
        assert replace(a, estimate=None) == replace(b, estimate=None)
        # the sum of confidences is added in another order: equal to the last bits or so
        assert a.estimate.accuracy == b.estimate.accuracy
        assert a.estimate.mean_confidence == pytest.approx(b.estimate.mean_confidence, rel=1e-12)
