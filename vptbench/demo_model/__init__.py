"""A tiny CLIP pretrained on rendered digit glyphs, so the offline demo benchmark measures something real."""
