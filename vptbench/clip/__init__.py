"""Pieces of CLIP's forward pass that tuners share, written against transformers' own modules."""
