"""psf-bench: latency per stage and backend, payload, memory and FLOPs."""
