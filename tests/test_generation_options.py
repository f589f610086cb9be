"""fairseq generation options that leave no valid output or no ranking are refused in one line."""
import math
from argparse import Namespace
from types import SimpleNamespace

import pytest

from genre_fairseq.task import GenreError, GenreTask, check_length_options


def _args(**overrides):
    base = dict(beam=5, nbest=1, lenpen=1.0, temperature=1.0, max_len_a=0, max_len_b=200, min_len=1, prefix_size=0)
    base.update(overrides)
    return Namespace(**base)


@pytest.mark.parametrize("overrides,message", [
    ({"lenpen": math.nan}, "--lenpen must be a finite number"),
    ({"lenpen": math.inf}, "--lenpen must be a finite number"),
    ({"lenpen": -math.inf}, "--lenpen must be a finite number"),
    ({"temperature": 0.0}, "--temperature must be a finite number > 0, got 0.0"),
    ({"temperature": math.nan}, "--temperature must be a finite number > 0"),
    ({"max_len_a": -1.0, "max_len_b": 1}, "--max-len-a must be a finite number >= 0, got -1.0"),
    ({"max_len_b": 0}, "--max-len-b must be >= 1"),
])
def test_impossible_length_and_score_options_are_refused(overrides, message):
    with pytest.raises(GenreError, match=message.replace("(", r"\(")):
        check_length_options(_args(**overrides))


@pytest.mark.parametrize("overrides", [{}, {"lenpen": -5.0}, {"lenpen": 0.0}, {"max_len_a": 1.5, "max_len_b": 0},
                                       {"temperature": 0.5}])
def test_usable_values_pass(overrides):
    check_length_options(_args(**overrides))  # a negative lenpen is fairseq's way to favour short outputs


@pytest.mark.parametrize("overrides,flag", [({"min_len": 50}, "--min-len"), ({"prefix_size": 1}, "--prefix-size")])
def test_options_that_fight_the_tree_are_refused(overrides, flag):
    task = SimpleNamespace(prefix_tree=object(), cfg=SimpleNamespace(candidate_multiple=2, end_to_end=False))
    with pytest.raises(GenreError, match=f"cannot be combined with {flag}"):
        GenreTask.build_generator(task, [], _args(**overrides))
