"""One module per recogniser kind; each loader returns an :class:`edge.face.protocols.Embedder`."""
