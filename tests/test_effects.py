"""Each mechanism's effect, and the same measurement with the mechanism switched off.

The margins, thresholds and what was measured over five seeds live in :mod:`tests.effects`;
both halves of the test go through its one :func:`~tests.effects.check`, so they cannot drift
apart. One test per mechanism, so the arm that the on- and the off-margin share trains once.
"""

import pytest

from tests.effects import EFFECTS, check


@pytest.mark.parametrize("name", list(EFFECTS))
def test_the_effect_is_there_and_gone_when_the_mechanism_is_switched_off(name, one_thread):
    effect = EFFECTS[name]
    check(effect, on=True)
    with pytest.raises(AssertionError, match="switched off"):
        check(effect, on=False)
