"""Split deployment: the mapping net behind Triton (server), the encoded-latent client, the model repository."""
