"""Multi-center training across machines on NVIDIA FLARE (extra `federated`).

Roles: the **hub** is the NVFlare server (psf.fed.hub): it adds up encrypted autoencoder updates,
stores the encoded pairs each hospital sends in a named shard, trains the mapping net with the same
server stage as psf-train and sends it back. The **hospitals** are NVFlare clients (psf.fed.hospital):
they hold their data, their autoencoders and the consortium's secret keys (the CKKS context of
psf.fed.he and, optionally, the latent key of psf.models.key) and each writes its own model.pt.
psf.fed.job writes the NVFlare job; psf.fed.run runs it in NVFlare's simulator or in PoC mode.
Nothing here is imported by the inference path.
"""
