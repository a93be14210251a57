"""What a hospital keeps to itself: where its data is, where its model goes, its secret keys.

The NVFlare job is the same for every site and passes through the hub, so it carries no paths, no
data-set names and no keys. Each hospital's client process finds its own settings in
`$PSF_FED_SITES/<site name>.json` (set by `psf fed sim|poc` for the local runs; in production the
hospital's admin sets it before running its startup kit's start.sh).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from psf.errors import PsfError
from psf.io.atomic import write_text_atomic

SITES_ENV = "PSF_FED_SITES"


@dataclass(frozen=True)
class SiteConfig:
    name: str
    data: Path        # the hospital's data set ({train,val,test}/{images,labels})
    out: Path         # folder for its model.pt and result.json
    he_secret: Path   # the consortium's CKKS context with the secret key (psf.fed.he)
    key: Path | None = None  # the consortium's latent key (psf key new), if the consortium uses one
    aggregation_key: Path | None = None  # with --aggregator hospitals: the AES key (psf.fed.sealed)

    def write(self, folder: Path) -> Path:
        fields = {k: (str(v) if v is not None else None) for k, v in asdict(self).items()}
        return write_text_atomic(Path(folder) / f"{self.name}.json", json.dumps(fields, indent=2) + "\n")

    @classmethod
    def load(cls, name: str) -> "SiteConfig":
        folder = os.environ.get(SITES_ENV)
        if not folder:
            raise PsfError(f"site {name}: set {SITES_ENV} to the folder holding {name}.json before starting the client")
        path = Path(folder) / f"{name}.json"
        if not path.is_file():
            raise PsfError(f"{path}: no settings for site {name}; write it with `psf fed site` or by hand")
        raw = json.loads(path.read_text())
        return cls(name=name, data=Path(raw["data"]), out=Path(raw["out"]), he_secret=Path(raw["he_secret"]),
                   key=Path(raw["key"]) if raw.get("key") else None,
                   aggregation_key=Path(raw["aggregation_key"]) if raw.get("aggregation_key") else None)
