"""Deterministic, counter-based random numbers keyed by a name: the Python twin of
src/core/hash_random.{h,cpp}, bit for bit (see the definition there).

    hash_uniform(name, scale, offset, n) -> np.float32 array of n values
        = float32(float64(float32(scale)) * v + float64(float32(offset))), v uniform in [-1, 1)

Run directly, it prints reference values that tests/test_hash_random.cpp checks.
"""

import numpy as np

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def fnv1a64(name):
    h = _FNV_OFFSET
    for b in name.encode("utf-8"):
        h = ((h ^ b) * _FNV_PRIME) & _MASK
    return h


def splitmix64(x):
    """Vectorised over a np.uint64 array (wrapping arithmetic)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def hash_uniform(name, scale, offset, n, chunk=1 << 22):
    out = np.empty(n, dtype=np.float32)
    h = np.uint64(fnv1a64(name))
    s = np.float64(np.float32(scale))
    o = np.float64(np.float32(offset))
    with np.errstate(over="ignore"):
        for begin in range(0, n, chunk):
            end = min(n, begin + chunk)
            idx = np.arange(begin, end, dtype=np.uint64) + h
            u = (splitmix64(idx) >> np.uint64(40)).astype(np.float64) * (1.0 / 16777216.0)
            out[begin:end] = (s * (2.0 * u - 1.0) + o).astype(np.float32)
    return out


def clip_hash_param(name, shape):
    """ClipTextModel::hash_param (src/models/clip_text.cpp): the deterministic random value of
    CLIP text-encoder parameter `name`, scale and offset by the kind of parameter; float32 array."""
    if "norm" in name and name.endswith(".weight"):
        scale, offset = 0.1, 1.0
    elif name.endswith(".bias"):
        scale, offset = 0.02, 0.0
    elif "embedding" in name:
        scale, offset = 0.05, 0.0
    else:
        assert len(shape) == 2, (name, shape)
        scale, offset = float(np.float32(1.0 / np.sqrt(float(shape[1])))), 0.0
    return hash_uniform(name, scale, offset, int(np.prod(shape))).reshape(shape)


if __name__ == "__main__":
    for name, scale, offset in [("", 1.0, 0.0), ("a", 0.5, 1.0),
                                ("text_model.encoder.layers.0.mlp.fc1.weight", 0.036084, 0.0)]:
        h = fnv1a64(name)
        v = hash_uniform(name, scale, offset, 4)
        print(f"fnv1a64({name!r}) = {h:#018x}")
        print(f"  values: {[float(x).hex() for x in v]}")
    print("splitmix64(0) =", hex(int(splitmix64(np.array([0], dtype=np.uint64))[0])))
