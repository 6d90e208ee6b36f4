"""The hub stores only images that really are JPEGs of a sane size.

The link schema checks the magic bytes and the byte size; that let through anything that
starts with FF D8 FF (an HTML page after three bytes was stored and later served to tablets).
Here the frame size is read from the JPEG's own SOF header first, so a small file that claims
to be 60000 x 60000 pixels is refused before the decoder allocates for it, then the image is
really decoded and its decoded size must match the header.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.link.schema import AlertFormatError

MAX_SIDE = 4096  # a face crop or a reference photo; the node sends crops well under this

_EOI = b"\xff\xd9"
# SOF markers carry the frame size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but not
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# markers without a length field
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment, or None if the markers do not lead to one."""
    i = 2  # after SOI
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any SOF
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2 or i + 2 + length > n:
            return None
        if marker in _SOF:
            if length < 7:
                return None
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return w, h
        i += 2 + length
    return None


def check_jpeg(data: bytes, what: str = "jpeg", max_side: int = MAX_SIDE) -> None:
    """Raise AlertFormatError (reason ``what``) unless ``data`` decodes as a JPEG within limits."""
    buf = bytes(data)
    size = jpeg_size(buf)
    if size is None:
        raise AlertFormatError(what, f"{what} is not a decodable JPEG (no frame header)")
    w, h = size
    if not (0 < w <= max_side and 0 < h <= max_side):
        raise AlertFormatError(what, f"{what} is {w}x{h} px; the hub takes 1..{max_side} a side")
    if not buf.endswith(_EOI):
        raise AlertFormatError(what, f"{what} does not end where a JPEG ends (data after it?)")
    img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.shape[0] != h or img.shape[1] != w:
        raise AlertFormatError(what, f"{what} is not a decodable JPEG")
