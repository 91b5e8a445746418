"""rules/steps.py holds every step of the contract, each the enum member itself."""

from jiancha.producers.contract import Step
from jiancha.rules import steps


def test_every_step_is_a_constant_that_is_its_member() -> None:
    constants = {name: value for name, value in vars(steps).items() if name.isupper()}
    assert constants == {member.name.upper(): member for member in Step}
    assert all(constants[m.name.upper()] is m for m in Step)
