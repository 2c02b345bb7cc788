"""The settings: one pydantic schema, its option tables and YAML presets."""
