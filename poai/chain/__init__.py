"""Consensus: parameters, difficulty, blocks, Ethereum transactions, state, validation.

Pure code: no I/O, no floats, every rejection a ValidationError with a
stable reason (docs/PROTOCOL.md).
"""
