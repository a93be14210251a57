"""psf-audit: attacks on the latents and the mapping net, measured against prior-only baselines (torch)."""
