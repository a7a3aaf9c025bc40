"""LoRA adapters as model directories: a folder holding ``adapter_config.json`` (and no ``config.json``) is its
base model (a model name such as ``smollm2``, or a path) with the adapter merged in. The transformers backend
merges in memory at load; engines that read weights from disk (vLLM) get a merged copy written once under
``settings.cache_dir``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from ..errors import ModelError

#: Files of an adapter directory that describe the C2S model; they travel with a merged copy.
DESCRIPTION = ("c2s_model.json", "README.md", "reverse_transform.json")


def is_adapter(path: Path) -> bool:
    path = Path(path)
    return (path / "adapter_config.json").is_file() and not (path / "config.json").is_file()


def base_of(path: Path, settings=None) -> Path:
    """The directory of an adapter's base model."""
    from .model import resolve

    base = json.loads((Path(path) / "adapter_config.json").read_text()).get("base_model_name_or_path")
    if not base:
        raise ModelError(path, "names no base model in adapter_config.json", "set base_model_name_or_path")
    return Path(resolve(base, settings)[1])


def load_causal_lm(path: Path, settings=None, **kwargs):
    """(model, directory of its tokenizer): a plain checkpoint, or an adapter merged into its base."""
    from transformers import AutoModelForCausalLM

    path = Path(path)
    if not is_adapter(path):
        return AutoModelForCausalLM.from_pretrained(path, **kwargs), path
    from peft import PeftModel

    base = base_of(path, settings)
    model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
    return PeftModel.from_pretrained(model, path).merge_and_unload(), base


def merged_dir(path: Path, settings=None) -> Path:
    """A plain model directory for ``path``: itself, or (an adapter) its merged copy in the cache, written the
    first time and keyed by the adapter's content."""
    from ..config import Settings

    path = Path(path)
    if not is_adapter(path):
        return path
    digest = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file():
            digest.update(f.name.encode() + f.read_bytes())
    out = Path((settings or Settings()).cache_dir).expanduser() / "merged" / f"{path.name}-{digest.hexdigest()[:12]}"
    if (out / "config.json").is_file():
        return out
    from transformers import AutoTokenizer

    model, source = load_causal_lm(path, settings)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    for name in DESCRIPTION:
        if (path / name).is_file():
            shutil.copy(path / name, tmp / name)
    tmp.rename(out)
    return out
