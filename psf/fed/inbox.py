"""A server-side result filter that keeps a copy of every message the hub receives, as bytes.

For the boundary test and for audits: what a curious hub could keep is exactly this. It records the
serialized task result (NVFlare's FOBS encoding of the Shareable) after it arrived at the hub, one
file per message, and passes the message on unchanged.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from nvflare.apis.filter import Filter
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.fuel.utils import fobs

from psf.io.atomic import write_bytes_atomic


class InboxRecorder(Filter):
    def __init__(self, folder: str):
        super().__init__()
        self.folder = folder
        self._count = itertools.count()

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        peer = fl_ctx.get_peer_context()
        site = peer.get_identity_name() if peer else "unknown"
        task = shareable.get_header("task_name", "") or ""
        name = f"{next(self._count):04d}-{site}-{task or 'result'}.fobs"
        write_bytes_atomic(Path(self.folder) / name, fobs.dumps(shareable))
        return shareable
