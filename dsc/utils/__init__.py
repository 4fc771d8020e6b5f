"""Glue between Hydra, Lightning and the loggers: kept out of the pure tensor code."""
