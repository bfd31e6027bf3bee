"""Read and write ediff weight blobs (the format of docs/blob.md).

A blob is one flat file: a 64-byte header, `key=value` metadata text, a tensor table, and the tensor
data, each tensor 64-byte aligned. The header's CRC-32 covers the whole file. This module is the one
Python implementation of the format: convert.py, the training export and the test-reference
generators all write through `write_blob`.
"""
import struct
import zlib

import numpy as np

MAGIC = b"EDIFFBLB"
VERSION = 1
HEADER = struct.Struct("<8sIIQQQQQII")  # magic, version, n_tensors, meta off/size, table off/size, file size, crc, reserved
ALIGN = 64
DTYPES = {"f32": (0, np.float32), "f16": (1, np.float16), "bf16": (2, None), "f64": (3, np.float64), "i32": (4, np.int32),
          "u8": (5, np.uint8)}
CODE_TO_NAME = {code: name for name, (code, _) in DTYPES.items()}
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i32": 4, "u8": 1}


def _align(n, a):
    return (n + a - 1) // a * a


def to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bits, round to nearest even (as torch does)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    nan = np.isnan(a)
    out = rounded.astype(np.uint16)
    out[nan] = 0x7FC0
    return out


def from_bf16_bits(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _meta_text(meta):
    lines = []
    for key, value in meta.items():
        key, value = str(key), str(value)
        if not key or any(not (c.isalnum() or c in "._-") for c in key):
            raise ValueError(f"bad metadata key {key!r}")
        if "\n" in value or "\0" in value:
            raise ValueError(f"metadata value of {key!r} holds a newline or NUL")
        lines.append(f"{key}={value}\n")
    return "".join(lines).encode("utf-8")


def write_blob(path, tensors, meta, dtype=None, dtype_overrides=None):
    """Write `tensors` (name -> numpy array) and `meta` (key -> value) to `path`.

    Arrays keep their own dtype (float32, float16, float64, int32, uint8) unless `dtype` ("f32", "f16",
    "bf16") is given, which then applies to every floating-point array; `dtype_overrides` (name ->
    dtype) sets it per tensor. Tensor order is preserved.
    """
    dtype_overrides = dtype_overrides or {}
    entries = []
    for name, arr in tensors.items():
        arr = np.asarray(arr)
        if name in dtype_overrides:
            kind = dtype_overrides[name]
        elif arr.dtype.kind == "f":
            kind = dtype or {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16",
                             np.dtype(np.float64): "f64"}.get(arr.dtype, "f32")
        elif arr.dtype == np.uint8:
            kind = "u8"              # raw bytes (tokenizer files)
        elif arr.dtype.kind in "iub":
            kind = "i32"
        else:
            raise ValueError(f"{name}: unsupported dtype {arr.dtype}")
        if kind == "bf16":
            raw = to_bf16_bits(arr.astype(np.float32)).tobytes()
        else:
            raw = np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[kind][1]).newbyteorder("<")).tobytes()
        if arr.ndim > 8:
            raise ValueError(f"{name}: rank {arr.ndim} > 8")
        entries.append((name.encode("utf-8"), kind, arr.shape, raw))

    meta_bytes = _meta_text(meta)
    meta_off = HEADER.size
    table_off = _align(meta_off + len(meta_bytes), 8)
    records = []
    for name, kind, shape, raw in entries:
        if not name or len(name) > 1023 or b"\0" in name:
            raise ValueError(f"bad tensor name {name!r}")
        rec_size = _align(2 + 1 + 1 + 8 * len(shape) + 8 + 8 + len(name) + 1, 8)
        records.append(rec_size)
    table_size = sum(records)
    offset = _align(table_off + table_size, ALIGN)
    table = bytearray()
    data_offsets = []
    for (name, kind, shape, raw), rec_size in zip(entries, records):
        data_offsets.append(offset)
        rec = struct.pack("<HBB", len(name), DTYPES[kind][0], len(shape))
        rec += b"".join(struct.pack("<Q", d) for d in shape)
        rec += struct.pack("<QQ", offset, len(raw)) + name + b"\0"
        table += rec + b"\0" * (rec_size - len(rec))
        offset = _align(offset + len(raw), ALIGN)
    file_size = offset if entries else _align(table_off + table_size, ALIGN)

    buf = bytearray(file_size)
    buf[meta_off:meta_off + len(meta_bytes)] = meta_bytes
    buf[table_off:table_off + table_size] = table
    for (name, kind, shape, raw), off in zip(entries, data_offsets):
        buf[off:off + len(raw)] = raw
    buf[:HEADER.size] = HEADER.pack(MAGIC, VERSION, len(entries), meta_off, len(meta_bytes),
                                    table_off, table_size, file_size, 0, 0)
    crc = zlib.crc32(buf) & 0xFFFFFFFF
    struct.pack_into("<I", buf, 56, crc)
    with open(path, "wb") as f:
        f.write(buf)


def read_blob(path):
    """Return (meta dict, tensors dict name -> numpy array) of a blob; bf16 comes back as float32."""
    with open(path, "rb") as f:
        buf = f.read()
    magic, version, n, meta_off, meta_size, table_off, table_size, file_size, crc, _ = HEADER.unpack_from(buf)
    if magic != MAGIC or version != VERSION or file_size != len(buf):
        raise ValueError(f"{path}: not an ediff blob of version {VERSION}")
    check = bytearray(buf)
    struct.pack_into("<I", check, 56, 0)
    if zlib.crc32(check) & 0xFFFFFFFF != crc:
        raise ValueError(f"{path}: checksum mismatch")
    meta = {}
    for line in buf[meta_off:meta_off + meta_size].decode("utf-8").splitlines():
        key, _, value = line.partition("=")
        meta[key] = value
    tensors = {}
    pos = table_off
    for _ in range(n):
        name_len, code, rank = struct.unpack_from("<HBB", buf, pos)
        shape = struct.unpack_from("<" + "Q" * rank, buf, pos + 4)
        off, size = struct.unpack_from("<QQ", buf, pos + 4 + 8 * rank)
        name_pos = pos + 4 + 8 * rank + 16
        name = buf[name_pos:name_pos + name_len].decode("utf-8")
        kind = CODE_TO_NAME[code]
        raw = np.frombuffer(buf, dtype=np.dtype(np.uint16 if kind == "bf16" else DTYPES[kind][1]).newbyteorder("<"),
                            count=size // ITEMSIZE[kind], offset=off)
        arr = from_bf16_bits(raw) if kind == "bf16" else raw.copy()
        tensors[name] = arr.reshape(shape)
        pos += _align(4 + 8 * rank + 16 + name_len + 1, 8)
    return meta, tensors
