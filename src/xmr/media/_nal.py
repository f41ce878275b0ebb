"""Which compressed video packets hold pictures no other picture is predicted from (safe to leave undecoded).

Used by :class:`xmr.media.video_reader.VideoReader` to skip, on the way to a target time, packets of pictures that
cannot be the frame shown at the target and that no later picture needs. Only length-prefixed streams are read
(MP4 / MOV / MKV: ``avcC`` / ``hvcC`` extradata); Annex-B streams (MPEG-TS, raw) and other codecs are decoded whole.

* H.264 (ITU-T H.264 7.3.1 / 7.4.1): one-byte NAL header ``forbidden_zero(1) nal_ref_idc(2) nal_unit_type(5)``;
  a slice (types 1, 5) with ``nal_ref_idc == 0`` is never used for inter prediction.
* HEVC (ITU-T H.265 7.3.1.2 / 7.4.2.2): two-byte header ``forbidden_zero(1) nal_unit_type(6) nuh_layer_id(6)
  nuh_temporal_id_plus1(3)``. VCL types 0, 2, 4, 6, 8, 10, 12, 14 (TRAIL_N, TSA_N, STSA_N, RADL_N, RASL_N,
  RSV_VCL_N10/12/14) are *sub-layer non-reference* pictures: not used by later pictures of the same temporal
  sub-layer, but possibly by pictures of higher sub-layers. Such a picture is therefore skipped only when it is in
  the highest sub-layer the stream declares (``numTemporalLayers`` of ``hvcC``; TemporalId = that - 1), and only
  in the base layer (``nuh_layer_id == 0``); a stream that does not declare its number of temporal layers (0) is
  decoded whole.
"""
from __future__ import annotations

from dataclasses import dataclass

#: HEVC VCL NAL unit types of sub-layer non-reference pictures (H.265 Table 7-1: the even types below 16)
HEVC_SUBLAYER_NON_REF = frozenset({0, 2, 4, 6, 8, 10, 12, 14})


@dataclass(frozen=True)
class NalLayout:
    """How to read a stream's packets: codec (``h264`` / ``hevc``), NAL length-prefix size, and for HEVC the
    highest TemporalId present (non-reference pictures of lower sub-layers may still be referenced)."""

    codec: str
    length_size: int
    max_temporal_id: int = 0


def nal_layout(stream) -> NalLayout | None:
    """The packet layout of an H.264 / HEVC stream in length-prefixed form, else None (no packet skipping)."""
    try:
        name = stream.codec_context.name
        if name not in ("h264", "hevc"):
            return None
        extra = bytes(stream.codec_context.extradata or b"")
    except Exception:  # noqa: BLE001 - optional information
        return None
    if name == "h264":
        if len(extra) < 7 or extra[0] != 1:  # avcC configurationVersion 1
            return None
        return NalLayout("h264", (extra[4] & 3) + 1)
    # hvcC (ISO/IEC 14496-15 8.3.3.1): version 1, 22 fixed bytes; byte 21 = constantFrameRate(2)
    # numTemporalLayers(3) temporalIdNested(1) lengthSizeMinusOne(2)
    if len(extra) < 23 or extra[0] != 1:
        return None
    layers = (extra[21] >> 3) & 7
    if layers == 0:  # unknown: a non-reference picture might be referenced by a higher sub-layer
        return None
    return NalLayout("hevc", (extra[21] & 3) + 1, layers - 1)


def is_non_reference(pkt, layout: NalLayout) -> bool:
    """True when the packet's picture is never used to predict another picture (per the module docstring); False
    when it may be, or when no slice NAL is found (the packet is then decoded)."""
    mv = memoryview(pkt)
    n, off, ls = len(mv), 0, layout.length_size
    while off + ls < n:
        size = int.from_bytes(mv[off: off + ls], "big")
        hdr = mv[off + ls]
        if layout.codec == "h264":
            if hdr & 0x1F in (1, 5):
                return (hdr >> 5) & 3 == 0
        else:
            typ = (hdr >> 1) & 0x3F
            if typ < 32:  # first VCL NAL: every slice of a picture has the same type
                if off + ls + 1 >= n:
                    return False
                hdr2 = mv[off + ls + 1]
                layer_id = ((hdr & 1) << 5) | (hdr2 >> 3)
                temporal_id = (hdr2 & 7) - 1
                return (typ in HEVC_SUBLAYER_NON_REF and layer_id == 0
                        and temporal_id == layout.max_temporal_id)
        off += ls + size
    return False
