"""Built-in GRPO rewards on real Kang cells (each tells a good input from a bad one), and a third-party reward
registered through the ``register_rewards`` hook by a fixture plugin."""

from __future__ import annotations

import numpy as np
import pytest

from c2s_agent import hookimpl, plugins
from c2s_agent.models.model import embedded_model_path
from c2s_agent.registry import RewardFactory
from c2s_agent.training import finetune as F
from c2s_agent.training import rewards as R
from c2s_agent.training.grpo import load_reverse

GROUP = "B"


@pytest.fixture(scope="module")
def setup(kang):
    """Reward data from the training split of the embedded model's view of Kang, and real B cells."""
    spec = F.DataSpec()
    m = F.meta_model(F.base_meta(embedded_model_path()))
    split = F.make_split(kang, spec)
    reverse = load_reverse(embedded_model_path(), kang, split.train, m.meta, 0)
    data = R.RewardData.from_cells(kang, m, split.train, "cell_type", "condition", "ctrl", reverse)
    ct, cond = kang.obs["cell_type"].astype(str).to_numpy(), kang.obs["condition"].astype(str).to_numpy()
    k = m.top_k["perturbation"]
    ctrl = m.sentences(kang[(ct == GROUP) & (cond == "ctrl")], k)[0]
    stim = m.sentences(kang[(ct == GROUP) & (cond == "stim")], k)[0]
    return data, ctrl, stim


def test_builtin_rewards_are_registered():
    assert {"program_agreement", "validity", "distribution", "exact_match"} <= set(R.registered_rewards())


def test_program_agreement_prefers_real_stimulated_cells(setup):
    data, ctrl, stim = setup
    reward = R.make_rewards(["program_agreement"], data, {"program": "ifn_alpha"})[0]
    n = 30
    good = reward(None, stim[:n], group=[GROUP] * n, control=ctrl[:n])
    bad = reward(None, ctrl[n : 2 * n], group=[GROUP] * n, control=ctrl[:n])  # another control cell: no response
    assert np.mean(good) > 0.3
    assert np.mean(good) > np.mean(bad) + 0.2
    same = reward(None, ctrl[:3], group=[GROUP] * 3, control=ctrl[:3])  # no change at all: undefined -> 0
    assert same == [0.0, 0.0, 0.0]
    kendall = R.make_rewards(["program_agreement"], data, {"program": "ifn_alpha", "method": "kendall"})[0]
    assert np.mean(kendall(None, stim[:n], group=[GROUP] * n, control=ctrl[:n])) > 0.2


def test_validity_penalises_unknown_repeated_and_short_sentences(setup):
    data, ctrl, stim = setup
    reward = R.make_rewards(["validity"], data)[0]
    words = stim[0].split()
    bad = [" ".join(words[:10] * 2), " ".join(words[:32] + ["NOTAGENE"] * 32), " ".join(words[:16])]
    good, *rest = reward(None, [stim[0], *bad], control=[ctrl[0]] * 4)
    assert good == 1.0
    assert all(r <= 0.55 for r in rest), rest


def test_distribution_rewards_cells_that_bring_the_batch_closer(setup):
    data, ctrl, stim = setup
    reward = R.make_rewards(["distribution"], data)[0]
    batch = stim[:4] + ctrl[:4]
    r = np.asarray(reward(None, batch, group=[GROUP] * 8))
    assert r[:4].mean() > r[4:].mean()
    assert reward(None, stim[:2], group=[GROUP] * 2) == [0.0, 0.0]  # too few completions of the type


def test_exact_match():
    reward = R.make_rewards(["exact_match"], None)[0]
    assert reward(None, ["CD14_Mono", "CD14 Mono .", "B"], label=["CD14 Mono"] * 3) == [1.0, 1.0, 0.0]


def test_unknown_reward_and_missing_data_are_input_errors(setup):
    from c2s_agent.errors import InputError

    with pytest.raises(InputError, match="not a registered reward"):
        R.make_rewards(["no_such_reward"], setup[0])
    with pytest.raises(InputError, match="perturbation task"):
        R.make_rewards(["program_agreement"], None)


class _LengthReward:
    """A third-party plugin: rewards longer completions."""

    @hookimpl
    def register_rewards(self, register):
        def factory(data=None, **_):
            return lambda prompts, completions, **__: [float(len(c.split())) for c in completions]

        register(RewardFactory("length", factory))


@pytest.fixture
def length_plugin():
    plugins.setup(None)
    plugins.pm.register(_LengthReward(), name="test-length-reward")
    yield "length"
    plugins.pm.unregister(name="test-length-reward")


def test_third_party_reward_through_the_hook(length_plugin, setup):
    fn = R.make_rewards([length_plugin, "validity"], setup[0])
    assert [f.__name__ for f in fn] == ["length", "validity"]
    assert fn[0](None, ["A B C", "A"]) == [3.0, 1.0]
    assert R.registered_rewards()["length"] is not None


def test_third_party_reward_is_gone_after_unregistering():
    assert "length" not in R.registered_rewards()
