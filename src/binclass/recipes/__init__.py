"""Recipes: how a run is trained from a resolved config (from scratch, a pretrained backbone, several
seeds), on top of the engine. `fit` is the entry point for all of them."""
