"""Named random streams (tmu_utils/core/seeds.py): each name keeps the number its draw always used, so no
split or run made before the names changed, and two names never share a stream by accident."""
import pytest

from tmu_utils.core import seeds


def test_each_stream_is_seeded_as_its_draw_always_was():
    # the formulas the call sites used before the names: splits seed·1 000 003 + k, the rest seed·7919 + salt
    old = {"members": 7 * 1_000_003 + 1, "forget": 7 * 1_000_003 + 2, "independent_twin_forget": 7 * 1_000_003 + 5,
           "tmu/hard": 7 * 7919 + 1, "tmu/margin": 7 * 7919 + 3, "l1_sparse": 7 * 7919 + 18,
           "random_rank": 7 * 7919 + 17, "population/subsets": 7 * 7919 + 99, "df_bank": 7 * 31 + 7}
    for name, number in old.items():
        assert seeds.generator(7, name).initial_seed() == number, name


def test_no_two_streams_share_a_number_but_the_one_recorded():
    numbers = {}
    for name, rule in seeds.STREAMS.items():
        numbers.setdefault(rule, []).append(name)
    shared = [names for names in numbers.values() if len(names) > 1]
    assert shared == [["salun", "random_rank"]]  # kept so that no recorded control changed


def test_an_unknown_stream_is_refused():
    with pytest.raises(KeyError, match="unknown random stream 'membres'"):
        seeds.generator(0, "membres")

