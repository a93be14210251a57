"""Training (torch): client autoencoders, encoding, and the server's mapping net on latents only."""
