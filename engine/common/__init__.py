"""What every stage uses: errors, safe file access, the embedded demo."""
