"""DSPy Signature classes for the general expert and the relevance tasks (prompts only)."""
