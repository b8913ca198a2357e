"""Adapters that turn each alert source into `Alert` models."""
