"""The numpy-only data path around the networks: preprocess -> (encode, map, decode) -> postprocess."""
