"""Segmentation evaluation: an rfm image encoder (frozen or fine-tuned) + a MONAI UNet-style decoder.

``run_segmentation(encoder, "covid_chestxray_ieee8023_lungs", out, cfg, data_root=...)`` trains the decoder
on the source's train split and scores Dice and HD95 (MONAI) per image on its eval split, with
patient-level bootstrap CIs. New mask sources register with ``@mask_sources.register("name")``.
"""

from rfm_eval.segmentation.data import LungMasks, SegmentationSource, SegSample, load_pair, mask_sources
from rfm_eval.segmentation.model import FeatureLevel, SegmentationModel, encoder_levels
from rfm_eval.segmentation.run import SegmentationResult, run_segmentation
from rfm_eval.segmentation.train import EncoderMode, PerImageScore, SegmentationConfig

__all__ = ["EncoderMode", "FeatureLevel", "LungMasks", "PerImageScore", "SegSample", "SegmentationConfig",
           "SegmentationModel", "SegmentationResult", "SegmentationSource", "encoder_levels", "load_pair",
           "mask_sources", "run_segmentation"]
