"""One interface per input kind (images, text): everything a run does that depends on what one example is.

`registry.modality_for(cfg)` and `registry.modality_of(model)` are the only places the kind is decided;
a new input kind, or a new base family of one, is a new module here.
"""
