"""Measuring the engine against itself, the hardware and llama.cpp (no consensus code).

* :mod:`~poai.measure.selftest`  the reference engine against the fast one, on the pinned model
* :mod:`~poai.measure.bench`     attempts per second, verify latency and memory per backend
* :mod:`~poai.measure.fidelity`  the integer engine's logits against llama.cpp's float ones
* :mod:`~poai.measure.llamacpp`  the llama-cpp-python adapter the two above compare with
"""
