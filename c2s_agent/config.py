"""Settings, read once from C2S_* environment variables and an optional TOML file, then passed down."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "c2s-agent"


class Settings(BaseSettings):
    """All knobs of c2s-agent. Env vars are ``C2S_<FIELD>``; a ``c2s.toml`` in the working directory (or the
    file named by ``C2S_CONFIG``) is read too; env vars win over the file."""

    model_config = SettingsConfigDict(env_prefix="C2S_", extra="ignore")

    model: str = Field("embedded", description="'embedded', a local HF checkpoint directory, or an http(s) URL")
    backend: str = Field("auto", description="model backend name; 'auto' picks from the model value")
    planner: str = Field("embedded", description="a registered planner: 'embedded', 'llm', 'hybrid' or a plugin's")
    planner_model: Path | None = Field(
        None, description="the tuned planner's tool chooser: a model or LoRA adapter directory (default: bundled)"
    )
    llm_base_url: str | None = Field(None, description="OpenAI-compatible endpoint for the LLM planner")
    llm_model: str | None = None
    llm_api_key: str | None = None
    llm_max_tokens: int = Field(160, ge=16, le=4096, description="most tokens of one LLM planner reply (a plan)")
    observe: bool = Field(
        True, description="after each step, a planner that observes (the LLM planners) may change the rest of the plan"
    )
    max_steps: int = Field(12, ge=1, description="step budget: the most steps a run takes once planners observe")
    runs_dir: Path = Path("runs")
    cache_dir: Path = Field(default_factory=_default_cache)
    models_dir: Path = Field(
        default_factory=lambda: _default_cache() / "models",
        description="where `c2s models pull` puts models (read, never written, by other commands)",
    )
    plugins: str | None = Field(
        None, description="comma-separated allow-list of entry-point plugins to load; unset loads all installed"
    )
    threads: int = Field(0, ge=0, description="torch threads; 0 means one per core")
    device: str = "cpu"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    mcp_allow: str | None = Field(
        None,
        description="directories (separated by os.pathsep) `c2s mcp` may read datasets "
        "from, besides the working directory and the bundled demo data",
    )

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=os.environ.get("C2S_CONFIG", "c2s.toml"))
        return (init_settings, env_settings, toml)

    @property
    def plugin_allow_list(self) -> set[str] | None:
        if self.plugins is None:
            return None
        return {p.strip() for p in self.plugins.split(",") if p.strip()}
