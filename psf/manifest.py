"""The bundle manifest (psf.json): what each file is, its tensors, normalization, labels and hashes.

Any file of a bundle can be handed to psf-infer: the manifest is found beside it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from psf.errors import BundleError
from psf.io.atomic import write_text_atomic
from psf.registry import MANIFEST_NAME

FORMAT = "psf-bundle/1"


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor; "N" in `shape` is the dynamic batch dimension."""

    name: str
    shape: list
    dtype: str

    def item_bytes(self) -> int:
        """Bytes of one batch item at this spec's dtype."""
        import numpy as np

        count = 1
        for d in self.shape:
            count *= 1 if d == "N" else int(d)
        return count * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class StageFile:
    file: str
    sha256: str
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass
class Manifest:
    image_size: int
    labels: list[str]
    normalization: dict | list  # one spec, or one per input channel (psf.pipeline.preprocess)
    slice_axis: int
    opset: int
    stages: dict[str, StageFile]
    wire_dtype: str = "float16"
    key_id: str | None = None
    # Names of the model's input channels, in order (a multi-channel case's CASE_0000, CASE_0001, ... files);
    # bundles from before channels were recorded have one.
    channels: list[str] = field(default_factory=lambda: ["T1"])
    modality: str = "MR"  # the training data set's (it chose the normalization)
    # Lower-precision ONNX copies (psf.export.precision): variant -> stage -> file; how each was made.
    variants: dict[str, dict[str, StageFile]] = field(default_factory=dict)
    variant_info: dict = field(default_factory=dict)
    engines: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    psf_version: str = ""
    format: str = FORMAT
    root: Path | None = field(default=None, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        """Input channels of the model (the encoder's and pipeline's image tensor: N, C, S, S)."""
        stage = self.stages.get("pipeline") or self.stages.get("encoder")
        return int(stage.inputs[0].shape[1]) if stage is not None else 1

    def stage_file(self, stage: str, variant: str = "fp32") -> StageFile:
        """The ONNX file of `stage` in `variant` ("fp32": the bundle's own graphs; "fp16", "int8", "int8-cpu")."""
        if variant != "fp32" and variant not in self.variants:
            made = ", ".join(self.variants) or "none"
            raise BundleError(f"the bundle at {self.root} has no {variant} ONNX (it has: {made}); make it with: "
                              f"psf-export MODEL.pt -o {self.root} --precision fp32,fp16,int8")
        files = self.stages if variant == "fp32" else self.variants[variant]
        if stage not in files:
            raise BundleError(f"the bundle at {self.root} has no {stage!r} stage (it has {', '.join(files)})")
        return files[stage]

    def path_of(self, stage: str, variant: str = "fp32") -> Path:
        return Path(self.root or ".") / self.stage_file(stage, variant).file

    def latent(self, which: str) -> TensorSpec:
        """"image" (encoder output, sent to the server) or "mask" (map output, sent back)."""
        return self.stages["encoder"].outputs[0] if which == "image" else self.stages["map"].outputs[0]

    def payload_bytes(self, dtype: str | None = None) -> dict[str, int]:
        """Bytes per slice on the wire in each direction, at `dtype` (default: the manifest's wire dtype)."""
        dtype = dtype or self.wire_dtype
        return {d: TensorSpec(s.name, s.shape, dtype).item_bytes()
                for d, s in (("up", self.latent("image")), ("down", self.latent("mask")))}

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("root")
        return json.dumps(data, indent=2)

    @classmethod
    def from_dict(cls, data: dict, root: Path | None = None) -> "Manifest":
        def files(entries: dict) -> dict[str, StageFile]:
            return {name: StageFile(s["file"], s["sha256"], [TensorSpec(**t) for t in s["inputs"]],
                                    [TensorSpec(**t) for t in s["outputs"]]) for name, s in entries.items()}

        variants = {name: files(entries) for name, entries in data.get("variants", {}).items()}
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k not in ("stages", "variants", "root")}
        return cls(stages=files(data["stages"]), variants=variants, root=root, **known)

    def save(self, folder: Path) -> Path:
        return write_text_atomic(Path(folder) / MANIFEST_NAME, self.to_json() + "\n")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_manifest(path: str | Path) -> Path:
    """psf.json for a bundle folder or for any file inside one."""
    from psf.registry import CHECKPOINT_SUFFIXES

    path = Path(path)
    if path.suffix in CHECKPOINT_SUFFIXES:
        raise BundleError(f"{path} is a training checkpoint, not a bundle; export it first: psf-export {path} -o bundle/ "
                          "and point at the bundle (e.g. --engine bundle/map.onnx)")
    folder = path if path.is_dir() else path.parent
    candidate = folder / MANIFEST_NAME
    if not path.exists():
        if path.suffix in (".plan", ".engine") and candidate.is_file():
            return candidate  # map.plan: "the map engine psf-build made"; psf.runtime.engines resolves the file
        raise BundleError(f"{path}: no such file or folder; make a bundle with: psf-export model.pt -o {folder}")
    if not candidate.is_file():
        raise BundleError(f"no {MANIFEST_NAME} beside {path}; point --engine at a file inside a bundle made by psf-export")
    return candidate


def load_manifest(path: str | Path) -> Manifest:
    manifest_path = find_manifest(path)
    try:
        data = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not readable JSON ({exc}); re-export the bundle with psf-export") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise BundleError(f"{manifest_path}: format {found!r}, this psf reads {FORMAT!r}; re-export with this psf's psf-export")
    try:
        return Manifest.from_dict(data, root=manifest_path.parent)
    except (KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path}: missing or malformed field {exc}; re-export the bundle with psf-export") from exc


def verify_file(manifest: Manifest, stage: str, variant: str = "fp32") -> Path:
    """The stage's file (in `variant`), after checking that it exists and matches the manifest's sha256."""
    path = manifest.path_of(stage, variant)
    if not path.is_file():
        raise BundleError(f"{path} is missing from the bundle; re-export with: psf-export MODEL.pt -o {manifest.root}")
    actual = sha256_file(path)
    expected = manifest.stage_file(stage, variant).sha256
    if actual != expected:
        raise BundleError(f"{path}: sha256 {actual[:12]}... does not match the manifest's "
                          f"{expected[:12]}...; the file was changed or corrupted, re-export the bundle")
    return path
