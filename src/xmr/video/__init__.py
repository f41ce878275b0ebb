"""Videos -> features -> vectors: the one path every command takes (index, train-head, eval).

1. **decode** (:mod:`xmr.media.video`): the frame shown at each target time, downscaled to the plan's shorter side;
2. **sampling plan** (:class:`FramePlan`, :mod:`.plan`): which times — the index's fps grid
   (``FramePlan.fps_grid()``: 1 fps, 8..1800 frames, 336 px; long videos sparser, segment windows scaled) or ``n``
   uniform frames over a clip or a moment's ``start``/``end`` window (``FramePlan.uniform(n)``: 224 px, train-head
   and eval); ``plan.to_dict()`` is what results record;
3. **frame features** (:func:`encode_frames`, :mod:`.features`): (T, D) L2-normalised embeddings, or (T, 1 + P, W)
   patch tokens when the encoder's head pools patch tokens (``ts2net``) — decided by ``encoder.capabilities``;
   :func:`clip_features` = decode + encode one clip per plan;
4. **pooling by head** (:func:`pool_frames`, :mod:`.pool`): the ``video:`` encoder's head, or meanP
   (:func:`mean_pool`) for a plain image encoder.

:func:`embed_video` (:mod:`.embed`) runs the four steps for the index: one vector per video plus one per segment
(:class:`VideoIndexConfig`, :func:`segment_windows`), frames kept when the head re-scores.
"""
from .embed import VideoEmbedding, VideoIndexConfig, embed_video, segment_windows
from .features import clip_features, decode_frames, encode_frames, frame_features, frame_tokens, item_frames
from .plan import FramePlan
from .pool import mean_pool, pool_frames

__all__ = ["FramePlan", "encode_frames", "clip_features", "decode_frames", "item_frames", "frame_features",
           "frame_tokens", "mean_pool", "pool_frames", "embed_video", "VideoIndexConfig", "VideoEmbedding",
           "segment_windows"]
