"""The proof of work: attempt seed, procedural quiz, attempt tokens, loss,
glyph fingerprint and proof digest (docs/PROTOCOL.md, "Proof of work")."""
