"""The largest request psf-serve can answer, derived from --max-batch, for the proxy that must enforce it.

Triton cannot refuse an oversized request before receiving it: its gRPC server accepts messages up to
2 GiB (MAX_GRPC_MESSAGE_SIZE, hard-coded in every Triton release, no flag), and the tritonserver in the
nvidia-pytriton wheel (Triton 2.51) has no HTTP input limit (--http-max-input-size came in 2.59, and checks
only after the whole body has arrived). Neither has a timeout for a client that stalls mid-request. So
where clients are not trusted, a proxy in front of psf-serve does both; this module gives it the numbers,
and psf-serve prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Everything in a request besides the tensor bytes: gRPC's 5-byte message prefix, the protobuf fields (model
# name, input name, datatype, shape, requested outputs, id) or HTTP's JSON inference header. A real request
# carries under 300 bytes of it; 4 KiB leaves room for request ids and parameters.
FRAMING_BYTES = 4096


@dataclass(frozen=True)
class RequestLimits:
    slice_bytes: int  # input bytes per slice on the widest wire served
    max_batch: int
    framing_bytes: int = FRAMING_BYTES

    @classmethod
    def for_schemas(cls, schemas, max_batch: int) -> "RequestLimits":
        return cls(max(schema.slice_bytes()["up"] for schema in schemas), max_batch)

    @property
    def max_request_bytes(self) -> int:
        """The largest gRPC message / HTTP body of a request psf-serve answers: max batch x slice + framing.

        A request over it would be refused anyway (more slices than --max-batch), only after Triton had
        received all of it."""
        return self.max_batch * self.slice_bytes + self.framing_bytes

    def describe(self) -> str:
        return (f"largest request {self.max_request_bytes} B ({self.max_batch} x {self.slice_bytes} B + "
                f"{self.framing_bytes} B framing): a proxy in front should refuse larger bodies and time out stalled clients")
