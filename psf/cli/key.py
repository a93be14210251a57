"""psf key: make the consortium key, a client-only file (psf.models.key)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from psf.cli.common import DebugOpt, reports_errors

app = typer.Typer(help="The consortium key: a secret channel transform of the latents, kept by the clients only.",
                  no_args_is_help=True)


@app.command("new")
def new(
    path: Annotated[Path, typer.Argument(help="Key file to write (readable by you only). Share it with the consortium's clients, never with the server.")],
    image_channels: Annotated[int, typer.Option(help="Image latent channels of the model (psf-train --image-latent).")] = 4,
    mask_channels: Annotated[int, typer.Option(help="Mask latent channels of the model (psf-train --mask-latent).")] = 3,
    permute: Annotated[bool, typer.Option(help="Also permute the channels (on top of the random rotation).")] = True,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing key file (models trained with it become unusable).")] = False,
    debug: DebugOpt = False,
) -> None:
    """Write a fresh random key: psf-train --key, psf-export --key and psf-audit --key then use it."""
    reports_errors(_new)(path, image_channels, mask_channels, permute, overwrite, debug=debug)


def _new(path: Path, image_channels: int, mask_channels: int, permute: bool, overwrite: bool) -> None:
    from psf.errors import UsageError
    from psf.models.key import ConsortiumKey

    if path.exists() and not overwrite:
        raise UsageError(f"{path} exists; models trained with it need it. Pass --overwrite to replace it anyway")
    if image_channels < 1 or mask_channels < 1:
        raise UsageError("--image-channels and --mask-channels must be >= 1")
    key = ConsortiumKey.generate(image_channels, mask_channels, permute)
    key.save(path)
    print(f"wrote {path} (key id {key.key_id}; {image_channels} image / {mask_channels} mask channels); "
          "keep it on the clients: the server must never get it")
