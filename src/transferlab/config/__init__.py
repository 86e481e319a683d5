"""The typed experiment config: schema, conversion from Hydra, and validation before anything heavy starts."""
