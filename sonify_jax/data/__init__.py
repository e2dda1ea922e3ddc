"""Datasets, input pipeline and augmentations."""
