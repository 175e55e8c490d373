"""Split invariants (docs/method.md: data splits): disjoint, sized, stratified, per scenario, deterministic."""
import pytest
import torch

from tmu_utils.core.params import make_params
from tmu_utils.core.splits import SplitError, make_splits

TRAIN_Y = torch.arange(6000) % 10
TEST_Y = torch.arange(1000) % 10


def splits_for(**values):
    return make_splits(TRAIN_Y, TEST_Y, make_params(values))


def counts(idx, labels=TRAIN_Y):
    return torch.bincount(labels[idx], minlength=10)


@pytest.mark.parametrize("scenario", ["random", "class_subset", "class"])
def test_disjoint_and_covering(scenario):
    s = splits_for(forget_scenario=scenario, forget_class=3)
    assert not torch.isin(s.members, s.holdout).any()
    assert torch.equal(torch.cat([s.members, s.holdout]).sort().values, torch.arange(6000))
    assert torch.isin(s.forget, s.members).all() and torch.isin(s.twin_forget, s.holdout).all()
    assert not torch.isin(s.retain, s.forget).any()
    assert len(s.retain) + len(s.forget) == len(s.members)


def test_random_sizes_and_stratified_members():
    s = splits_for(member_fraction=0.8, forget_fraction=0.1)
    assert s.sizes() == {"members": 4800, "holdout": 1200, "forget": 480, "retain": 4320,
                         "twin_forget": 480, "test": 1000}
    assert (counts(s.members) == 480).all()  # stratified: 80 % of each class


def test_twin_forget_matches_forget_composition():
    s = splits_for(forget_fraction=0.15, seed=3)
    assert torch.equal(counts(s.forget), counts(s.twin_forget))


def test_class_scenarios():
    sub = splits_for(forget_scenario="class_subset", forget_class=4, forget_fraction=0.1)
    assert (TRAIN_Y[sub.forget] == 4).all() and len(sub.forget) == 48
    assert (TRAIN_Y[sub.twin_forget] == 4).all() and len(sub.twin_forget) == 48
    whole = splits_for(forget_scenario="class", forget_class=4)
    assert len(whole.forget) == 480 and (TRAIN_Y[whole.retain] != 4).all()
    assert (TRAIN_Y[whole.twin_forget] == 4).all() and len(whole.twin_forget) == 120  # all the holdout has


def test_limits_are_stratified():
    s = splits_for(train_limit=1000, test_limit=200)
    assert len(s.members) + len(s.holdout) == 1000 and (counts(torch.cat([s.members, s.holdout])) == 100).all()
    assert len(s.test) == 200 and (counts(s.test, TEST_Y) == 20).all()


def test_deterministic_and_seed_dependent():
    a, b, c = splits_for(seed=5), splits_for(seed=5), splits_for(seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.to_dict().values(), b.to_dict().values()))
    assert not torch.equal(a.forget, c.forget)


def test_members_do_not_depend_on_the_forget_request():
    # so that M_o is reused across forget fractions and scenarios
    a, b = splits_for(forget_fraction=0.05), splits_for(forget_fraction=0.2, forget_scenario="class_subset")
    assert torch.equal(a.members, b.members)


@pytest.mark.parametrize("values, message", [
    ({"forget_scenario": "class", "forget_class": 10}, "out of range"),
    ({"forget_fraction": 0.0001, "train_limit": 100}, "forget set is empty"),
    ({"member_fraction": 0.95, "forget_fraction": 0.5}, "holdout has"),
])
def test_impossible_requests_fail_clearly(values, message):
    with pytest.raises(SplitError, match=message):
        splits_for(**values)


def test_fraction_outside_unit_interval_is_rejected():
    from tmu_utils.core.params import Params

    p = Params(forget_fraction=1.5)  # bypasses validation on purpose
    with pytest.raises(SplitError, match="forget_fraction"):
        make_splits(TRAIN_Y, TEST_Y, p)
