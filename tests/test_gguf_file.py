"""The streaming GGUF reader agrees with gguf's own, and the canonical hash
(now computed from the packed storage a row chunk at a time) is the hash of
the whole canonical arrays, as before."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np
import pytest

import synth
import vectors_gen
from poai.engine import gguf_file
from poai.engine.model import CONVERSION_VERSION, Config, GGUFFields, open_reader, read_model
from poai.errors import GGUFFormatError


def test_header_matches_gguf_reader(tmp_path: Path):
    path = synth.write_llama(tmp_path / "m.gguf", n_layer=2)
    ours = open_reader(path)
    theirs = gguf.GGUFReader(str(path))
    assert [t.name for t in ours.tensors] == [t.name for t in theirs.tensors]
    for a, b in zip(ours.tensors, theirs.tensors, strict=True):
        assert list(a.shape) == [int(x) for x in b.shape]
        assert a.tensor_type == b.tensor_type and a.n_bytes == int(b.n_bytes)
        assert np.array_equal(ours.read_tensor(a).reshape(-1), np.asarray(b.data).view(np.uint8).reshape(-1))
    kv = GGUFFields(ours)
    for key, f in theirs.fields.items():
        if key.startswith("GGUF."):
            continue
        assert kv.has(key)
        if key == "tokenizer.ggml.tokens":
            assert kv.strings(key) == [bytes(f.parts[i]).decode() for i in f.data]
    assert kv.str("general.architecture") == "llama"


def test_bad_headers_are_format_errors(tmp_path: Path):
    good = synth.write_llama(tmp_path / "m.gguf", n_layer=1).read_bytes()
    cases = {
        "version": good[:4] + (9).to_bytes(4, "little") + good[8:],
        "counts": good[:8] + (2**40).to_bytes(8, "little") + good[16:],
        "cut": good[:200],
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.gguf"
        p.write_bytes(data)
        with pytest.raises(GGUFFormatError, match="not a valid GGUF"):
            open_reader(p)


def _hash_of_whole_arrays(model) -> str:
    """canonical_hash as written before packing: whole q/scale/minv arrays."""
    h = hashlib.sha256()
    h.update(b"poai-canonical-model")
    h.update(CONVERSION_VERSION.to_bytes(4, "little"))
    for name in Config.__dataclass_fields__:
        h.update(f"{name}={getattr(model.config, name)};".encode())

    def put_matrix(m):
        if m is None:
            h.update(b"-")
            return
        h.update(f"{m.name}:{m.fmt}:{m.block}:{m.rows}x{m.cols};".encode())
        h.update(np.ascontiguousarray(m.q).view(np.uint8).data)
        h.update(np.ascontiguousarray(m.scale.astype("<i4")).data)
        if m.minv is not None:
            h.update(np.ascontiguousarray(m.minv.astype("<i4")).data)

    def put_vec(v):
        h.update(b"-" if v is None else v.astype("<i8").tobytes())

    put_matrix(model.tok_embd)
    put_vec(model.pos_embd)
    for layer in model.layers:
        put_vec(layer.attn_norm)
        put_vec(layer.attn_norm_b)
        for m in (layer.wq, layer.wk, layer.wv, layer.wqkv):
            put_matrix(m)
        put_vec(layer.wqkv_b)
        put_matrix(layer.wo)
        put_vec(layer.wo_b)
        put_vec(layer.ffn_norm)
        put_vec(layer.ffn_norm_b)
        put_matrix(layer.w_gate)
        put_matrix(layer.w_up)
        put_vec(layer.w_up_b)
        put_matrix(layer.w_down)
        put_vec(layer.w_down_b)
    put_vec(model.out_norm)
    put_vec(model.out_norm_b)
    put_matrix(model.output)
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(vectors_gen.SYNTH_MODELS))
def test_canonical_hash_is_the_whole_array_hash(tmp_path: Path, name):
    model = read_model(vectors_gen.build_synth(name, tmp_path))
    assert model.canonical_sha256 == _hash_of_whole_arrays(model)


def test_string_array_items():
    arr = gguf_file.StringArray(b"abcde", np.array([1, 1, 5]))
    assert len(arr) == 3 and list(arr) == [b"a", b"", b"bcde"] and arr[-1] == b"bcde"
    with pytest.raises(IndexError):
        arr[3]
