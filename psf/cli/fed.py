"""psf fed: multi-center training on NVIDIA FLARE (the hub and the hospitals), extra `federated`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from psf.cli.common import DebugOpt, QuietOpt, reports_errors
from psf.errors import UsageError

app = typer.Typer(help="Hospitals train together on NVIDIA FLARE: encrypted autoencoder rounds, encoded pairs to the hub, "
                       "the hub's mapping net back to every hospital.", no_args_is_help=True)

Centers = Annotated[list[str], typer.Argument(help="NAME=DIR per hospital (its data set folder), two or more.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder: keys, site settings, NVFlare workspace, each hospital's model.pt, report.json.")]
Minutes = Annotated[Optional[float], typer.Option(help="Wall-time budget per participant (as psf-train --minutes).")]
Epochs = Annotated[Optional[int], typer.Option(help="Epoch budget per stage, over all rounds (with --minutes: whichever ends first).")]
Steps = Annotated[Optional[str], typer.Option(help="Step budget per stage, over all rounds, as psf-train --steps (N, or image_ae=N,mask_ae=N,mapping=N); the default is psf-train's.")]
Rounds = Annotated[int, typer.Option(help="Encrypted autoencoder-averaging rounds.")]
MinClients = Annotated[Optional[int], typer.Option(help="Hospitals that must answer each task (default: all); fewer answering within --task-timeout stops the run.")]
TaskTimeout = Annotated[int, typer.Option(help="Seconds the hub waits for a task's answers (0: forever); a hospital not answering is dropped and named in the report.")]
Views = Annotated[int, typer.Option(help="Augmented views per training slice.")]
Seed = Annotated[int, typer.Option(help="Random seed (every hospital starts from the same initial weights).")]
Key = Annotated[Optional[Path], typer.Option(help="Consortium latent key (psf key new), given to the hospitals only.")]
Defense = Annotated[str, typer.Option(help="The hub's membership defense: none | distill (as psf-train).")]
Augment = Annotated[str, typer.Option(help="The hub's encoded-data augmentations (as psf-train --latent-augment).")]
ImageSize = Annotated[int, typer.Option(help="Model input size.")]
Width = Annotated[int, typer.Option(help="Width of the client networks (and of the mapping net's first level).")]
Aggregator = Annotated[str, typer.Option(help="How autoencoder updates are combined: 'he' (the hub adds CKKS ciphertexts it cannot read; the default) or 'hospitals' (explicit fallback where TenSEAL cannot be installed, e.g. aarch64: the hub relays AES-sealed updates and every hospital averages them; hospitals then see each other's weights).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --out after a failure: same consortium keys, the hub resumes after its last finished round (hub/state).")]
CompareAlone = Annotated[bool, typer.Option(help="Also train each hospital alone with the same budget; report.json gets Dice side by side.")]


def _plan(minutes, epochs, steps, views, seed, latent_augment, membership_defense, image_size, width, rounds, quiet,
          aggregator="he") -> dict:
    from psf.fed.plan import make_plan
    from psf.models.config import ModelConfig
    from psf.train.distill import DEFENSES
    from psf.train.latent_augment import LatentAugment
    from psf.train.run import TrainOptions, parse_steps

    if steps is not None and epochs is not None:
        raise UsageError("give --steps or --epochs, not both")
    if rounds < 1 or views < 1:
        raise UsageError("--rounds and --views must be >= 1")
    if membership_defense not in DEFENSES:
        raise UsageError(f"--membership-defense {membership_defense!r}: choose one of {', '.join(DEFENSES)}")
    latent_augment = LatentAugment.from_names(latent_augment).names()
    model = ModelConfig(image_size=image_size, client_width=width, map_width=width)
    model.check()
    opts = TrainOptions(data=Path("."), out=Path("model.pt"), model=model, minutes=minutes, epochs=epochs,
                        stage_steps=parse_steps(steps), views=views,
                        latent_augment=latent_augment, membership_defense=membership_defense, seed=seed, quiet=quiet)
    return make_plan(opts, rounds, aggregator)


def _run(mode: str, centers: list[str], out: Path, min_clients: int | None, task_timeout: int, key: Path | None,
         compare_alone: bool, plan: dict, resume: bool = False) -> None:
    from psf.fed.report import compare_alone as alone, summary_lines
    from psf.fed.run import FedRun, parse_centers, run_poc, run_sim
    from psf.progress import stderr

    parsed = parse_centers(centers)
    if out.exists() and any(out.iterdir()) and not resume:
        raise UsageError(f"--out {out}: not empty; give a new run folder, or --resume to continue the run there")
    run = FedRun(out=out, centers=parsed, plan=plan, min_clients=min_clients or len(parsed), task_timeout=task_timeout, key=key,
                 resume=resume)
    report = (run_sim if mode == "sim" else run_poc)(run)
    if compare_alone:
        report = alone(report, parsed, out, key)
    stderr.print(f"NVFlare {report['nvflare']} {mode}: {len(parsed)} hospitals, {report['seconds']:.0f} s; "
                 f"dropped: {', '.join(report['hub']['dropped']) or 'none'}; wrote {out / 'report.json'}")
    print("\n".join(summary_lines(report)))


@app.command("sim")
def sim(centers: Centers, out: OutOpt = Path("fed-run"), minutes: Minutes = None, epochs: Epochs = None, steps: Steps = None, rounds: Rounds = 4,
        min_clients: MinClients = None, task_timeout: TaskTimeout = 0, views: Views = 12, seed: Seed = 0, key: Key = None,
        membership_defense: Defense = "none", latent_augment: Augment = "shift", image_size: ImageSize = 256,
        width: Width = 32, aggregator: Aggregator = "he", compare_alone: CompareAlone = False, resume: ResumeOpt = False,
        quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Run the federation in NVFlare's simulator on this machine (what the tests use)."""
    reports_errors(_command)("sim", **{k: v for k, v in locals().items() if k != "debug"}, debug=debug)


@app.command("poc")
def poc(centers: Centers, out: OutOpt = Path("fed-run"), minutes: Minutes = None, epochs: Epochs = None, steps: Steps = None, rounds: Rounds = 4,
        min_clients: MinClients = None, task_timeout: TaskTimeout = 0, views: Views = 12, seed: Seed = 0, key: Key = None,
        membership_defense: Defense = "none", latent_augment: Augment = "shift", image_size: ImageSize = 256,
        width: Width = 32, aggregator: Aggregator = "he", compare_alone: CompareAlone = False, resume: ResumeOpt = False,
        quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Run the federation as separate processes (hub + one per hospital) over NVFlare's network stack, with
    provisioned certificates (NVFlare PoC mode), on this machine."""
    reports_errors(_command)("poc", **{k: v for k, v in locals().items() if k != "debug"}, debug=debug)


def _command(mode, centers, out, minutes, epochs, steps, rounds, min_clients, task_timeout, views, seed, key, membership_defense,
             latent_augment, image_size, width, aggregator, compare_alone, resume, quiet) -> None:
    plan = _plan(minutes, epochs, steps, views, seed, latent_augment, membership_defense, image_size, width, rounds, quiet,
                 aggregator)
    _run(mode, centers, out, min_clients, task_timeout, key, compare_alone, plan, resume)


@app.command("keys")
def keys(out: Annotated[Path, typer.Argument(help="Folder for he-secret.tenseal (every hospital) and he-public.tenseal (the hub only).")],
         aggregator: Aggregator = "he", debug: DebugOpt = False) -> None:
    """Make the consortium's keys: the CKKS (TenSEAL) pair, or with --aggregator hospitals an AES key."""

    def _keys(out: Path) -> None:
        if aggregator == "hospitals":
            from psf.fed.sealed import new_key

            print(f"wrote {new_key(out)} (give to every hospital, never to the hub)")
            return
        from psf.fed.he import new_contexts

        secret, public = new_contexts(out)
        print(f"wrote {secret} (give to every hospital, never to the hub) and {public} (the hub's)")

    reports_errors(_keys)(out, debug=debug)


@app.command("site")
def site(name: Annotated[str, typer.Argument(help="The hospital's NVFlare client name (as in its startup kit).")],
         data: Annotated[Path, typer.Option(help="The hospital's data set folder.")],
         he_secret: Annotated[Path, typer.Option(help="he-secret.tenseal from psf fed keys.")],
         out: OutOpt = Path("fed-site"),
         sites: Annotated[Path, typer.Option(help="Folder of site settings; point $PSF_FED_SITES at it before starting the client.")] = Path("psf-sites"),
         key: Key = None, debug: DebugOpt = False) -> None:
    """Write a hospital's own settings (data, output, secret keys): read by its client only, never sent."""

    def _site() -> None:
        from psf.fed.site import SiteConfig

        path = SiteConfig(name, data.resolve(), out.resolve(), he_secret.resolve(), key.resolve() if key else None).write(sites)
        print(f"wrote {path}; on this machine: export PSF_FED_SITES={sites.resolve()}")

    reports_errors(_site)(debug=debug)


@app.command("job")
def job(out: Annotated[Path, typer.Argument(help="Folder to write the NVFlare job into (submit it with `nvflare job submit -j OUT/psf_federation`).")],
        he_public: Annotated[Path, typer.Option(help="Path of he-public.tenseal ON THE HUB's machine.")],
        min_clients: Annotated[int, typer.Option(help="Hospitals that must answer each task.")] = 2,
        task_timeout: TaskTimeout = 0, minutes: Minutes = None, epochs: Epochs = None, steps: Steps = None, rounds: Rounds = 4, views: Views = 12,
        seed: Seed = 0, membership_defense: Defense = "none", latent_augment: Augment = "shift",
        image_size: ImageSize = 256, width: Width = 32, aggregator: Aggregator = "he", debug: DebugOpt = False) -> None:
    """Write the NVFlare job for a production consortium (provisioned startup kits)."""

    def _job() -> None:
        from psf.fed.job import JOB_NAME, build_job

        plan = _plan(minutes, epochs, steps, views, seed, latent_augment, membership_defense, image_size, width, rounds, False,
                     aggregator)
        build_job(plan, he_public, min_clients, task_timeout).export_job(str(out))
        print(f"wrote {out / JOB_NAME}")
        print(json.dumps({"rounds": rounds, "min_clients": min_clients}))

    reports_errors(_job)(debug=debug)
