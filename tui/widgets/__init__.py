"""Widgets of our own, one per module."""
