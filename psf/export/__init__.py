"""model.pt -> ONNX bundle (torch needed here; the bundle it writes is run without torch)."""
