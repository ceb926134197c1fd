"""A whole sweep in-process: spec -> packs -> training with probes -> store, on both databases."""

import numpy as np
import pandas as pd

from service.sweeps.local import create_sweep, pack_tasks, run_sweep_local
from service.sweeps.spec import SweepSpec
from tests.integration.specs import tiny_spec

SPEC = tiny_spec("tiny", factors={"model.n_heads": [1, 2], "train.lr": [1e-3, 1e-2]}, seeds=2)


def test_sweep_writes_every_head_metric_exactly_once(store):
    outcome = run_sweep_local(store, SweepSpec.model_validate(SPEC), device="cpu")
    assert outcome.sweep.status == "succeeded"
    assert len(outcome.variants) == 8 and not outcome.failed
    assert len({v.pack_key for v in outcome.variants}) == 2  # one pack per head count
    heads = pd.DataFrame(store.read_head_metric_columns(sweep_id=outcome.sweep.id))
    probe_steps = [0, 3, 6]
    for v in outcome.variants:
        rows = heads[heads.variant_id == v.id]
        n_heads = v.config["model"]["n_heads"]
        # every (step, layer, head) of every metric present, no duplicates
        per_metric = rows.groupby("metric").size()
        assert (per_metric == len(probe_steps) * 2 * n_heads).all(), per_metric
        assert not rows.duplicated(["step", "layer", "head", "metric"]).any()
        assert sorted(rows.step.unique()) == probe_steps
        assert {"induction", "prev_token", "entropy", "importance", "specialization"} <= set(rows.metric)
    scalars = pd.DataFrame(store.read_scalar_metric_columns(sweep_id=outcome.sweep.id))
    icl = scalars[scalars.name == "icl_score"]
    assert len(icl) == 8 * len(probe_steps)
    assert np.isfinite(scalars.value).all()


def test_variants_with_the_same_seed_and_config_agree_across_packs(store):
    """A variant's numbers must not depend on which pack it trained in."""
    spec = SweepSpec.model_validate({**SPEC, "factors": {"train.lr": [1e-3, 1e-2]}, "seeds": [3]})
    alone = SweepSpec.model_validate({**SPEC, "name": "alone", "factors": {}, "seeds": [3],
                                      "base": {**SPEC["base"], "train": {**SPEC["base"]["train"],
                                                                         "lr": 1e-2}}})
    packed = run_sweep_local(store, spec, device="cpu")
    single = run_sweep_local(store, alone, device="cpu")
    a = store.read_head_metric_columns(variant_ids=[packed.variants[1].id], metrics=["entropy"])
    b = store.read_head_metric_columns(variant_ids=[single.variants[0].id], metrics=["entropy"])
    np.testing.assert_allclose(a["value"], b["value"], rtol=1e-4, atol=1e-5)


def test_a_recorded_sweep_runs_by_id_and_a_rerun_only_finishes_what_is_left(store):
    """What a submitted sweep's driver does: the API records the sweep, the driver runs it by
    id; a restarted driver runs only the packs that have not succeeded, writing nothing twice."""
    spec = SweepSpec.model_validate(SPEC)
    sweep, variants, tasks = create_sweep(store, spec)
    assert store.get_sweep(sweep.id).status == "pending"
    first = tasks[0].variant_ids
    store.finish_variants(first, "succeeded")  # as if a first driver finished one pack
    outcome = run_sweep_local(store, sweep.id, device="cpu")
    assert outcome.sweep.status == "succeeded" and not outcome.failed
    assert store.count_head_metrics(variant_ids=first) == 0  # that pack was not run again
    rows = store.count_head_metrics(sweep_id=sweep.id)
    assert rows > 0
    again = run_sweep_local(store, sweep.id, device="cpu")  # nothing left to run
    assert again.sweep.status == "succeeded"
    assert store.count_head_metrics(sweep_id=sweep.id) == rows
    assert [t.variant_ids for t in pack_tasks(store.get_sweep(sweep.id), variants)] == \
        [t.variant_ids for t in tasks]
