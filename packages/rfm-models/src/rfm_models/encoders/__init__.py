"""Encoders: timm image backbones, transformers text encoders, projection heads (one registry each)."""

from rfm_models.encoders.heads import create_projection_head, projection_heads
from rfm_models.encoders.image import ImageEncoder, create_image_encoder, image_encoders
from rfm_models.encoders.image3d import VolumeEncoder  # registers the 3D encoders (*_3d)
from rfm_models.encoders.text import TextEncoder, create_text_encoder, text_encoders
from rfm_models.encoders.tokenizer import TextTokenizer, train_tokenizer

__all__ = ["ImageEncoder", "TextEncoder", "TextTokenizer", "VolumeEncoder", "create_image_encoder",
           "create_projection_head", "create_text_encoder", "image_encoders", "projection_heads", "text_encoders",
           "train_tokenizer"]
