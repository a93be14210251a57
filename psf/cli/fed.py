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
Defense = Annotated[str, typer.Option(help="The hub's membership defense: none | distill | dp (as psf-train; dp: DP-SGD at the hub, needs --epsilon, the mapping net uses GroupNorm, the hub needs the dp extra).")]
Epsilon = Annotated[Optional[float], typer.Option(help="With --membership-defense dp: the privacy target per training slice, over all hospitals' slices (as psf-train).")]
Delta = Annotated[Optional[float], typer.Option(help="With --membership-defense dp: delta (default 1 / number of training slices at the hub).")]
MaxGradNorm = Annotated[float, typer.Option(help="With --membership-defense dp: clipping norm of each slice's gradient.")]
Augment = Annotated[str, typer.Option(help="The hub's encoded-data augmentations (as psf-train --latent-augment).")]
ImageSize = Annotated[int, typer.Option(help="Model input size.")]
Width = Annotated[int, typer.Option(help="Width of the client networks (and of the mapping net's first level).")]
Aggregator = Annotated[str, typer.Option(help="How autoencoder updates are combined: 'he' (the hub adds CKKS ciphertexts it cannot read; the default) or 'hospitals' (explicit fallback where TenSEAL cannot be installed, e.g. aarch64: the hub relays AES-sealed updates and every hospital averages them; hospitals then see each other's weights).")]
ResumeOpt = Annotated[bool, typer.Option(help="Continue the run in --out after a failure: same consortium keys, the hub resumes after its last finished round (hub/state).")]
CompareAlone = Annotated[bool, typer.Option(help="Also train each hospital alone with the same budget; report.json gets Dice side by side.")]


def _plan(minutes, epochs, steps, views, seed, latent_augment, membership_defense, image_size, width, rounds, quiet,
          aggregator="he", epsilon=None, delta=None, max_grad_norm=0.1, local_hub=True) -> dict:
    """The plan from the flags; `local_hub`: the hub runs here (sim, poc), so its extras are checked here."""
    from psf.fed.plan import make_plan
    from psf.models.config import ModelConfig, default_patch
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
    dp = dict(epsilon=epsilon, delta=delta, max_grad_norm=max_grad_norm)
    map_norm = "batch"
    if membership_defense == "dp":
        from psf.train.dp import DpOptions, require_opacus

        DpOptions(**dp).check()
        if local_hub:
            require_opacus()
        map_norm = "group"  # Opacus refuses BatchNorm (as psf-train --membership-defense dp)
    elif epsilon is not None or delta is not None:
        raise UsageError("--epsilon and --delta set the DP target: add --membership-defense dp")
    model = ModelConfig(image_size=image_size, patch=default_patch(image_size), client_width=width, map_width=width,
                        map_norm=map_norm)
    model.check()
    opts = TrainOptions(data=Path("."), out=Path("model.pt"), model=model, minutes=minutes, epochs=epochs,
                        stage_steps=parse_steps(steps), views=views, latent_augment=latent_augment,
                        membership_defense=membership_defense, seed=seed, quiet=quiet, **dp)
    return make_plan(opts, rounds, aggregator)


def _run(mode: str, centers: list[str], out: Path, min_clients: int | None, task_timeout: int, key: Path | None,
         compare_alone: bool, plan: dict, resume: bool = False) -> None:
    from psf.fed.report import compare_alone as alone, summary_lines, where_dropped
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
    resumed = report["hub"].get("resumed_after_round")
    stderr.print(f"NVFlare {report['nvflare']} {mode}: {len(parsed)} hospitals, {report['seconds']:.0f} s"
                 f"{f' (resumed after round {resumed})' if resumed else ''}; "
                 f"dropped: {'; '.join(f'{s} at {where_dropped(d)}' for s, d in report['hub']['dropped'].items()) or 'none'}; "
                 f"wrote {out / 'report.json'}")
    print("\n".join(summary_lines(report)))


@app.command("sim")
def sim(centers: Centers, out: OutOpt = Path("fed-run"), minutes: Minutes = None, epochs: Epochs = None, steps: Steps = None, rounds: Rounds = 4,
        min_clients: MinClients = None, task_timeout: TaskTimeout = 0, views: Views = 12, seed: Seed = 0, key: Key = None,
        membership_defense: Defense = "none", epsilon: Epsilon = None, delta: Delta = None, max_grad_norm: MaxGradNorm = 0.1,
        latent_augment: Augment = "shift", image_size: ImageSize = 256,
        width: Width = 32, aggregator: Aggregator = "he", compare_alone: CompareAlone = False, resume: ResumeOpt = False,
        quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Run the federation in NVFlare's simulator on this machine (what the tests use)."""
    reports_errors(_command)("sim", **{k: v for k, v in locals().items() if k != "debug"}, debug=debug)


@app.command("poc")
def poc(centers: Centers, out: OutOpt = Path("fed-run"), minutes: Minutes = None, epochs: Epochs = None, steps: Steps = None, rounds: Rounds = 4,
        min_clients: MinClients = None, task_timeout: TaskTimeout = 0, views: Views = 12, seed: Seed = 0, key: Key = None,
        membership_defense: Defense = "none", epsilon: Epsilon = None, delta: Delta = None, max_grad_norm: MaxGradNorm = 0.1,
        latent_augment: Augment = "shift", image_size: ImageSize = 256,
        width: Width = 32, aggregator: Aggregator = "he", compare_alone: CompareAlone = False, resume: ResumeOpt = False,
        quiet: QuietOpt = False, debug: DebugOpt = False) -> None:
    """Run the federation as separate processes (hub + one per hospital) over NVFlare's network stack, with
    provisioned certificates (NVFlare PoC mode), on this machine."""
    reports_errors(_command)("poc", **{k: v for k, v in locals().items() if k != "debug"}, debug=debug)


def _command(mode, centers, out, minutes, epochs, steps, rounds, min_clients, task_timeout, views, seed, key, membership_defense,
             epsilon, delta, max_grad_norm, latent_augment, image_size, width, aggregator, compare_alone, resume, quiet) -> None:
    plan = _plan(minutes, epochs, steps, views, seed, latent_augment, membership_defense, image_size, width, rounds, quiet,
                 aggregator, epsilon, delta, max_grad_norm)
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
        seed: Seed = 0, membership_defense: Defense = "none", epsilon: Epsilon = None, delta: Delta = None,
        max_grad_norm: MaxGradNorm = 0.1, latent_augment: Augment = "shift",
        image_size: ImageSize = 256, width: Width = 32, aggregator: Aggregator = "he",
        labels: Annotated[Optional[str], typer.Option(help="The hospitals' label names in order, background first, comma-separated, as their dataset.json lists them (default: the MNI152 demo's other,grey_matter,white_matter). Every hospital checks its data against them.")] = None,
        channels: Annotated[int, typer.Option(help="Image channels per case in the hospitals' data (their dataset.json's channels).")] = 1,
        like: Annotated[Optional[Path], typer.Option(help="Take --labels and --channels from a data set folder (or its dataset.json) with the hospitals' layout; its images are not read.")] = None,
        state_dir: Annotated[Optional[Path], typer.Option(help="Folder ON THE HUB's machine for the hub's round state: a job submitted again with the same folder (and options) resumes after the last finished round (give a new folder for a new training). Default: inside the job's own workspace (no resume).")] = None,
        debug: DebugOpt = False) -> None:
    """Write the NVFlare job for a production consortium (provisioned startup kits)."""

    def _job() -> None:
        from psf.fed.job import JOB_NAME, build_job

        plan = _plan(minutes, epochs, steps, views, seed, latent_augment, membership_defense, image_size, width, rounds, False,
                     aggregator, epsilon, delta, max_grad_norm, local_hub=False)
        plan = _with_layout(plan, labels, channels, like)
        for flag, path in (("--he-public", he_public), ("--state-dir", state_dir)):
            if path is not None and not path.is_absolute():
                raise UsageError(f"{flag} {path}: give an absolute path on the hub's machine (the job runs there)")
        build_job(plan, he_public, min_clients, task_timeout, state_dir).export_job(str(out))
        print(f"wrote {out / JOB_NAME}")
        print(json.dumps({"rounds": rounds, "min_clients": min_clients, "labels": plan["labels"],
                          "channels": plan["model"]["in_channels"], "membership_defense": membership_defense}))

    reports_errors(_job)(debug=debug)


def _with_layout(plan: dict, labels: str | None, channels: int, like: Path | None) -> dict:
    """The plan sized to the hospitals' data: labels (names, background first) and channels, from the flags or
    from a data set's dataset.json (`--like`), as `psf fed sim|poc` take them from the first hospital."""
    from dataclasses import replace

    from psf.models.config import ModelConfig

    if like is not None:
        if labels is not None:
            raise UsageError("give --like or --labels, not both")
        from psf.data.dataset import load

        info = load(like.parent if like.name == "dataset.json" else like)
        names, channels = list(info.labels), len(info.channels)
    else:
        names = [x.strip() for x in labels.split(",")] if labels is not None else list(plan["labels"])
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise UsageError(f"--labels {labels!r}: give two or more distinct names, background first (e.g. background,tumour)")
    if channels < 1:
        raise UsageError(f"--channels {channels}: must be >= 1")
    model = replace(ModelConfig.from_dict(plan["model"]), in_channels=channels, num_classes=len(names))
    model.check()
    return {**plan, "labels": names, "model": model.to_dict()}
