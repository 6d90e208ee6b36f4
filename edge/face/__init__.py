"""Face models behind two protocols (Detector, Embedder), alignment, quality gates."""
