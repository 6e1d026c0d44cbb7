"""Pretrained weights shipped with empose: models trained on the free CMU motion-capture corpus."""
