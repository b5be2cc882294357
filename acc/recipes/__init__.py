"""Recipes: runnable experiments, discovered from this folder by their ``name``."""

from __future__ import annotations

from functools import cache

from acc.recipes.base import Condition, Gating, Recipe, RecipeParams
from acc.registry import Registry, discover


@cache
def recipe_registry() -> Registry:
    """Every Recipe class in ``acc/recipes/``, keyed by its ``name``."""
    return discover("acc.recipes", Recipe, lambda cls: cls.name, "recipe")


__all__ = ["Condition", "Gating", "Recipe", "RecipeParams", "recipe_registry"]
