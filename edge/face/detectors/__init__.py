"""One module per face detector; each class follows :class:`edge.face.protocols.Detector`."""
