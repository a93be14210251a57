"""The paper's sequential scheme: client autoencoders -> encode pairs -> server mapping net on latents.

The server stage takes an `EncodedPairs` and nothing else: no images, no masks. That is how the
privacy boundary is kept in code. Client stages train on random crops of precomputed augmented views
(the networks are fully convolutional), which makes a CPU step about four times cheaper.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from psf.models import Networks
from psf.train.augment import intensity, one_hot
from psf.train.latent_augment import LatentAugment
from psf.train.loop import Budget, cosine_lr, run_loop
from psf.train.views import Views


@dataclass(frozen=True)
class StageOptions:
    budget: Budget
    batch_size: int = 16
    lr: float = 3e-3
    crop: int = 128
    quiet: bool = False
    # This run's slice of one learning-rate schedule (federated rounds share one: round r of R is (r/R, (r+1)/R)).
    schedule: tuple[float, float] = (0.0, 1.0)
    # Where the stage's networks train ("cpu", "cuda:0"); batches are drawn and augmented on the CPU, each with its
    # own seed from the stage's generator (psf.train.batches: the same seed, the same batches on any device), and
    # moved there.
    device: str = "cpu"
    # torchrun: this process' rank and the number of processes (psf.train.distributed); batch_size is per process.
    world: tuple[int, int] = (0, 1)
    # DataLoader workers that make the batches (psf.train.batches; 0: in the loop's process). The model does
    # not depend on it.
    workers: int = 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This process' part of a global batch (all of it in a single process)."""
        rank, size = self.world
        return idx if size == 1 else idx[rank::size]

    @property
    def pin(self) -> bool:
        """Batches go to pinned memory (on CUDA): the copy then runs asynchronously while the next is made."""
        return str(self.device).startswith("cuda")

    def put(self, batch: torch.Tensor) -> torch.Tensor:
        """This process' part of a batch on the stage's device (pinned by psf.train.batches on CUDA, so the
        copy is asynchronous)."""
        batch = self.shard(batch)
        return batch.to(self.device, non_blocking=True) if self.pin else batch

    def loop(self, name: str, step, make, n_items: int, gen: torch.Generator) -> dict:
        """run_loop over this stage's data: global batches of batch_size x processes, made by `make`."""
        return run_loop(name, step, n_items, self.batch_size * self.world[1], self.budget, gen, self.quiet,
                        make=make, workers=self.workers, pin=self.pin)

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from psf.train.distributed import World

        return World(*self.world).wrap(module, self.device)

    def progress(self, done: float) -> float:
        start, end = self.schedule
        return start + done * (end - start)


def mixed_precision(device: str):
    """bfloat16 autocast on CUDA (no loss scaling needed, same exponent range as fp32); nothing on the CPU,
    where fp32 is what the exported graphs compute."""
    if str(device).startswith("cuda"):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def module_device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy + soft Dice (mean over foreground classes). target: (n, S, S) class indices."""
    ce = F.cross_entropy(logits, target)
    probs = logits.softmax(1)[:, 1:]
    truth = one_hot(target, logits.shape[1])[:, 1:]
    inter = (probs * truth).sum((0, 2, 3))
    dice = (2 * inter + 1) / (probs.sum((0, 2, 3)) + truth.sum((0, 2, 3)) + 1)
    return ce + (1 - dice).mean()


def client_optimizer(*modules: torch.nn.Module, lr: float = 3e-3) -> torch.optim.Optimizer:
    """The client stages' optimizer; a federated center keeps one across rounds (its moments persist)."""
    return torch.optim.AdamW([p for m in modules for p in m.parameters()], lr=lr, weight_decay=1e-4)


def train_image_autoencoder(nets: Networks, views: Views, opts: StageOptions, gen: torch.Generator,
                            opt: torch.optim.Optimizer | None = None) -> dict:
    """Client stage 1a: E_x, D_x with an L1 + MSE reconstruction loss on intensity-augmented crops."""
    enc, dec = nets.image_encoder.train().to(opts.device), nets.image_decoder.train().to(opts.device)
    opt = opt or client_optimizer(enc, dec, lr=opts.lr)
    multiple = nets.config.patch * 2
    autoencoder = opts.wrap(torch.nn.Sequential(enc, dec))

    def make(idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor]:
        x, _ = views.crops(idx, opts.crop, g, multiple, labels=False)
        return (intensity(x, g, views.bounded),)

    def step(batch: tuple[torch.Tensor], done: float) -> float:
        cosine_lr(opt, opts.lr, opts.progress(done))
        x = opts.put(batch[0])
        with mixed_precision(opts.device):
            recon = autoencoder(x).float()
        loss = F.l1_loss(recon, x) + F.mse_loss(recon, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return opts.loop("client: image autoencoder", step, make, len(views), gen)


def train_mask_autoencoder(nets: Networks, views: Views, opts: StageOptions, gen: torch.Generator,
                           latent_noise: float = 0.08, opt: torch.optim.Optimizer | None = None) -> dict:
    """Client stage 1b: E_y, D_y with Dice + CE on decoded masks.

    Gaussian noise on the latent during training makes D_y tolerant of the mapping net's small errors.
    """
    enc, dec = nets.mask_encoder.train().to(opts.device), nets.mask_decoder.train().to(opts.device)
    opt = opt or client_optimizer(enc, dec, lr=opts.lr)
    cfg = nets.config
    c, multiple = cfg.num_classes, cfg.patch * 2
    autoencoder = opts.wrap(_NoisyAutoencoder(enc, dec))

    def make(idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        _, y = views.crops(idx, opts.crop, g, multiple, images=False)
        n, h, w = y.shape
        return y, latent_noise * torch.randn((n, cfg.mask_latent, h // cfg.patch, w // cfg.patch), generator=g)

    def step(batch: tuple[torch.Tensor, torch.Tensor], done: float) -> float:
        cosine_lr(opt, opts.lr, opts.progress(done))
        y, noise = (opts.put(t) for t in batch)
        with mixed_precision(opts.device):
            logits = autoencoder(one_hot(y, c), noise).float()
        loss = dice_ce_loss(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return opts.loop("client: mask autoencoder", step, make, len(views), gen)


class _NoisyAutoencoder(torch.nn.Module):
    """decode(encode(one-hot mask) + noise): one module, so DDP sees the whole forward."""

    def __init__(self, enc: torch.nn.Module, dec: torch.nn.Module):
        super().__init__()
        self.enc, self.dec = enc, dec

    def forward(self, masks: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(masks) + noise)


@dataclass
class EncodedPairs:
    """What the server receives: image latents z_x and mask latents z_y, (n, c, g, g) float32 each, and
    `groups`, an integer per pair that is equal for the views of one slice (no other information): the
    membership defenses (psf.train.distill, psf.train.dp) keep a slice's views together.

    z_image / z_mask are tensors, or psf.train.rowfile.RowFile rows on disk (encode_pairs with a folder):
    read them through take()."""

    z_image: torch.Tensor
    z_mask: torch.Tensor
    groups: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.z_image)

    def take(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pairs `idx` as tensors, read from disk when the pairs live there."""
        return _rows(self.z_image, idx), _rows(self.z_mask, idx)

    def in_memory(self) -> "EncodedPairs":
        """The same pairs with their latents as tensors (for work on all of them at once)."""
        if isinstance(self.z_image, torch.Tensor):
            return self
        return EncodedPairs(torch.from_numpy(self.z_image[:]), torch.from_numpy(self.z_mask[:]), self.groups)


def _rows(values, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values[idx]
    return torch.from_numpy(values[np.asarray(idx, dtype=np.int64)])


@torch.no_grad()
def encode_pairs(nets: Networks, views: Views, batch_size: int = 64, key=None, folder=None) -> EncodedPairs:
    """Client stage 2: encode every (geometrically augmented) view as it is; with `folder`, the latents are
    written there as row files (psf.train.rowfile) instead of held in memory.

    No intensity augmentation here: on the demo data, encoding intensity-augmented views lowered test
    Dice (0.947 -> 0.933) and did not help on gamma-changed scans; the image encoder was already
    trained on intensity-augmented images, and percentile normalization removes scale and offset.
    With a consortium key (psf.models.key) both latents are keyed here, before they leave the client.
    """
    from pathlib import Path

    from psf.train.rowfile import RowWriter

    enc_x, enc_y = nets.image_encoder.eval(), nets.mask_encoder.eval()
    c, dev = nets.config.num_classes, module_device(enc_x)
    lock_x = key.image.forward_module() if key is not None else None
    lock_y = key.mask.forward_module() if key is not None else None
    zx, zy, writers = [], [], None
    for start in range(0, len(views), batch_size):
        images, labels = views.batch(start, start + batch_size)
        bx, by = enc_x(images.to(dev)).cpu(), enc_y(one_hot(labels.to(dev), c)).cpu()
        if key is not None:
            bx, by = lock_x(bx), lock_y(by)
        if folder is None:
            zx.append(bx), zy.append(by)
            continue
        if writers is None:
            writers = [RowWriter(Path(folder) / f"{name}.rows", np.float32, b.shape[1:])
                       for name, b in (("z_image", bx), ("z_mask", by))]
        writers[0].append(bx.numpy()), writers[1].append(by.numpy())
    if folder is None:
        return EncodedPairs(torch.cat(zx), torch.cat(zy), views.slices)
    return EncodedPairs(writers[0].close(), writers[1].close(), views.slices)


def train_mapping(mapping: torch.nn.Module, pairs: EncodedPairs, opts: StageOptions, gen: torch.Generator,
                  augment: LatentAugment = LatentAugment(), name: str = "server: mapping net") -> dict:
    """Server stage 3: M(z_x) -> z_y by MSE on encoded-data-augmented pairs (default: consistent latent crops)."""
    if not isinstance(pairs, EncodedPairs):
        raise TypeError("the server stage trains on EncodedPairs (latents) only")
    mapping.train().to(opts.device)
    opt = torch.optim.AdamW(mapping.parameters(), lr=opts.lr, weight_decay=1e-4)
    net = opts.wrap(mapping)

    def make(idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(*pairs.take(idx), g, opts.crop)

    def step(batch: tuple[torch.Tensor, torch.Tensor], done: float) -> float:
        cosine_lr(opt, opts.lr, done)
        z_x, z_y = (opts.put(t) for t in batch)
        with mixed_precision(opts.device):
            pred = net(z_x).float()
        loss = F.mse_loss(pred, z_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return opts.loop(name, step, make, len(pairs), gen)


@torch.no_grad()
def predict_probs(nets: Networks, images: np.ndarray, batch_size: int = 32, key=None) -> np.ndarray:
    """Client -> server -> client in torch: (n, C, S, S) images -> (n, classes, S, S) probabilities
    (keyed latents in between when the model was trained with a consortium key)."""
    nets.eval()
    dev = module_device(nets.image_encoder)
    lock = (key.image.forward_module() if key is not None else torch.nn.Identity()).to(dev)
    unlock = (key.mask.inverse_module() if key is not None else torch.nn.Identity()).to(dev)
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).to(dev)
        out.append(nets.mask_decoder(unlock(nets.mapping(lock(nets.image_encoder(x))))).softmax(1).cpu().numpy())
    return np.concatenate(out)
