"""Built-in rewards for GRPO (program agreement, validity, distribution fidelity, exact match); the
functions live in :mod:`c2s_agent.training.rewards`."""

from __future__ import annotations

from c2s_agent import hookimpl
from c2s_agent.registry import RewardFactory


@hookimpl
def register_rewards(register):
    from c2s_agent.training import rewards

    for factory in (rewards.program_agreement, rewards.validity, rewards.distribution, rewards.exact_match):
        register(RewardFactory(factory.__name__, factory))
