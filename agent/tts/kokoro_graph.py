"""Kokoro's ONNX graph, edited so that it stops rendering silence we would throw away.

Kokoro gives every token (the pad token 0 at both ends included) a number of 25 ms frames,
and its generator (upsampling convolutions + iSTFT, ~85% of a short chunk's synthesis time
on a CPU) costs the same per frame whether the frame sounds or not. The start pad gets 13-17
frames of which only the last 1-4 carry the first sound, and the tokens after the last
phoneme (punctuation, the end pad) are silent: for the 1-4-word chunks a reply starts with,
about 45% of what was rendered is cut again by `trim_silence`.

`generator_slice_patch` leaves the duration and prosody predictors and the frame-level
decoder as they are (they see every frame, so the words and their timing do not change) and
slices only the generator's two inputs to the frames `frame_caps` keeps. Measured with
`python -m bench.kokoro_pads` (docs/kokoro-first-chunk.md): 18-34% less wall time for
1-3-word chunks, 5% for 8 words; Whisper WER 2.7% against 3.2% over 40 clauses.

The edit is done on the serialized model with a few lines of protobuf (no `onnx` package at
run time); with no caps the patched model gives the original's output bit for bit.

The patched model is kept in the user cache dir (`<cache>/kokoro/patched/`), so a start loads
it from a file instead of reading and patching the source again: `python -m bench.kokoro_start`
measures what that saves.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from agent import paths

log = logging.getLogger(__name__)

FRAME_SAMPLES = 600  # one duration frame at 24 kHz
NO_CAP = 10_000
# The first frames of the start pad are silent; the last of them carry the first sound's onset.
LEAD_FRAMES = 8
# Frames kept for each token after the last phoneme (whose own frames are never capped): 2
# keeps most of the final sound's decay (median 79 ms after trimming, against 90 ms uncut).
TAIL_FRAMES = 2
# Characters in the phoneme string that are not sounds.
NON_PHONEMES = frozenset(';:,.!?¡¿—…"()“”«» ')

# The tensors the patch reads and rewires, by their names in the Kokoro-82M v1.0 export
# (kokoro-onnx's model; the int8 and float exports share them).
# /encoder/Round -> Clip(min 1) -> Cast(int64): frames per token, [1, T].
DURATIONS = "/encoder/Cast_output_0"
# The generator's inputs: the decoded features (2 per frame) and the F0 curve (2 per frame).
DECODED, DECODED_READER = ("/decoder/decoder/decode.3/Div_4_output_0",
                           "/decoder/decoder/generator/LeakyRelu")
F0_CURVE, F0_READER = ("/decoder/decoder/Unsqueeze_output_0",
                       "/decoder/decoder/generator/f0_upsamp/Resize")
CAP_INPUT = "durations_cap"  # int64 [1, T], like tokens: the most frames each token may keep


class UnknownGraph(ValueError):
    """The model is not the Kokoro export this patch knows; use it unpatched."""


def frame_caps(phonemes: str, vocab: dict[str, int], lead: int = LEAD_FRAMES,
               tail: int = TAIL_FRAMES, last: int = NO_CAP) -> np.ndarray:
    """The `durations_cap` input for `[0, *tokens, 0]`: the start pad keeps at most `lead`
    frames, each token after the last sounding phoneme at most `tail`, the last phoneme at
    most `last`, every other token all of its frames."""
    kept = [p for p in phonemes if p in vocab]
    caps = np.full((1, len(kept) + 2), NO_CAP, dtype=np.int64)
    caps[0, 0] = lead
    sounding = [i for i, p in enumerate(kept, start=1) if p not in NON_PHONEMES]
    final = sounding[-1] if sounding else 0
    caps[0, final + 1:] = tail
    if final:
        caps[0, final] = last
    return caps


# -- protobuf, just enough of it --------------------------------------------------------------

def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf: memoryview) -> Iterator[tuple[int, bytes | memoryview, memoryview | None]]:
    """(field number, the whole field's bytes, its payload if length-delimited)."""
    pos = 0
    try:
        while pos < len(buf):
            start = pos
            key, pos = _read_varint(buf, pos)
            number, wire = key >> 3, key & 7
            payload = None
            if wire == 0:
                _, pos = _read_varint(buf, pos)
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                size, pos = _read_varint(buf, pos)
                payload, pos = buf[pos:pos + size], pos + size
            else:
                raise UnknownGraph(f"not an ONNX model (protobuf wire type {wire})")
            if pos > len(buf):
                raise IndexError(pos)
            yield number, buf[start:pos], payload
    except IndexError:
        raise UnknownGraph("not an ONNX model (truncated protobuf)") from None


def _len_field(number: int, payload: bytes | bytearray | memoryview) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + bytes(payload)


def _str(number: int, text: str) -> bytes:
    return _len_field(number, text.encode())


def node(op: str, inputs: list[str], outputs: list[str], name: str) -> bytes:
    """NodeProto: input 1, output 2, name 3, op_type 4."""
    return (b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs)
            + _str(3, name) + _str(4, op))


def int64_initializer(name: str, values: list[int]) -> bytes:
    """TensorProto: dims 1, data_type 2 (INT64 = 7), name 8, raw_data 9."""
    return (_varint(1 << 3) + _varint(len(values)) + _varint(2 << 3) + _varint(7)
            + _str(8, name) + _len_field(9, np.array(values, "<i8").tobytes()))


def int64_value_info(name: str, dims: list[int | str] | None) -> bytes:
    """ValueInfoProto{name, type{tensor_type{elem_type INT64, shape{dim...}}}}."""
    tensor = _varint(1 << 3) + _varint(7)
    if dims is not None:
        tensor += _len_field(2, b"".join(
            _len_field(1, _varint(1 << 3) + _varint(d) if isinstance(d, int) else _str(2, d))
            for d in dims))
    return _str(1, name) + _len_field(2, _len_field(1, tensor))


CAP_INPUTS = [int64_value_info(CAP_INPUT, [1, "sequence_length"])]


def edit_graph(model: bytes, rewire: dict[str, tuple[str, str]], nodes: list[bytes],
               initializers: list[bytes], inputs: list[bytes], outputs: list[bytes]) -> bytes:
    """The model with, in its graph: the nodes named in `rewire` reading a new tensor in place
    of an old one ({node name: (old input, new input)}), and the new nodes, initializers
    (TensorProto), inputs and outputs (ValueInfoProto) added. Raises UnknownGraph if a node
    to rewire is missing or does not read the old tensor."""
    out = bytearray()
    found: set[str] = set()
    for number, whole, payload in _fields(memoryview(model)):
        if number != 7 or payload is None:  # ModelProto.graph
            out += whole
            continue
        graph = bytearray()
        for g_number, g_whole, g_payload in _fields(payload):
            if g_number != 1 or g_payload is None:  # GraphProto.node
                graph += g_whole
                continue
            fields = list(_fields(g_payload))
            name = next((bytes(p).decode(errors="replace") for n, _, p in fields
                         if n == 3 and p is not None), "")
            if name not in rewire:
                graph += g_whole
                continue
            old, new = rewire[name]
            edited = bytearray()
            for n, f_whole, f_payload in fields:
                if (n == 1 and f_payload is not None and bytes(f_payload) == old.encode()
                        and name not in found):
                    edited += _str(1, new)
                    found.add(name)
                else:
                    edited += f_whole
            graph += _len_field(1, edited)
        # appended after the nodes that read them: onnxruntime sorts the graph itself
        graph += b"".join(_len_field(1, n) for n in nodes)
        graph += b"".join(_len_field(5, t) for t in initializers)
        graph += b"".join(_len_field(11, i) for i in inputs)
        graph += b"".join(_len_field(12, o) for o in outputs)
        out += _varint(7 << 3 | 2) + _varint(len(graph))
        out += graph  # not _len_field: no more copies of a 92 MB graph than needed
    if found != set(rewire):
        raise UnknownGraph(
            f"not the Kokoro graph this patch knows (missing {sorted(set(rewire) - found)})")
    return bytes(out)


def generator_slice_patch(model: bytes, expose_caps: bool = False) -> bytes:
    """The model with a `durations_cap` input: the generator renders only frames
    [d0 - min(d0, cap0), that + sum(min(d, cap))), i.e. with the start pad and the tokens
    after the last phoneme cut to their caps (times 2 for the generator's input rate). Caps
    must only cut the first token and the last ones. `expose_caps` adds the kept frames per
    token as a second output (for analysis)."""
    nodes = [
        node("Min", [DURATIONS, CAP_INPUT], ["cap/kept"], "cap/min"),
        node("Reshape", [DURATIONS, "cap/c_flat"], ["cap/d"], "cap/flat_d"),
        node("Reshape", ["cap/kept", "cap/c_flat"], ["cap/k"], "cap/flat_k"),
        node("Slice", ["cap/d", "cap/c_0", "cap/c_1"], ["cap/d0"], "cap/first_d"),
        node("Slice", ["cap/k", "cap/c_0", "cap/c_1"], ["cap/k0"], "cap/first_k"),
        node("Sub", ["cap/d0", "cap/k0"], ["cap/start"], "cap/start"),
        node("ReduceSum", ["cap/k"], ["cap/length"], "cap/length"),
        node("Add", ["cap/start", "cap/length"], ["cap/end"], "cap/end"),
        node("Mul", ["cap/start", "cap/c_2"], ["cap/start2"], "cap/start2"),
        node("Mul", ["cap/end", "cap/c_2"], ["cap/end2"], "cap/end2"),
        node("Slice", [DECODED, "cap/start2", "cap/end2", "cap/c_2"], ["cap/x"], "cap/x"),
        node("Slice", [F0_CURVE, "cap/start2", "cap/end2", "cap/c_2"], ["cap/f0"], "cap/f0"),
    ]
    constants = [int64_initializer("cap/c_flat", [-1]), int64_initializer("cap/c_0", [0]),
                 int64_initializer("cap/c_1", [1]), int64_initializer("cap/c_2", [2])]
    return edit_graph(
        model, {DECODED_READER: (DECODED, "cap/x"), F0_READER: (F0_CURVE, "cap/f0")},
        nodes, constants, CAP_INPUTS, [int64_value_info("cap/kept", None)] if expose_caps else [])


# -- the patched model, kept on disk ----------------------------------------------------------

# Bump whenever generator_slice_patch's output changes: cached graphs of the older patch are
# then never read again, and cleaned away.
PATCH_VERSION = 1
# Patched graphs kept, the newest used first: each is as big as its source (92 MB for the
# packaged int8 model, 310 MB for the float one), and one is all that a single model needs.
CACHE_ENTRIES = 2
# A temp file this old is what a crash left, not another agent's write in progress (< 1 s).
STALE_TEMP_SECONDS = 600


def cache_dir() -> Path:
    return paths.cache_dir() / "kokoro" / "patched"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_entry(model: Path, cache: Path | None = None) -> Path:
    """Where the patched graph of `model` is kept: `<source>-<identity>.onnx`, the source being
    the model's resolved path and its identity what makes the graph valid, the file's size and
    mtime (ns) and PATCH_VERSION. A content hash would cost 60 ms per 92 MB at every start
    (200 ms for the float model), a fifth of what the cache saves; a model file replaced or
    rebuilt (models.packaged_onnx) gets a new mtime, and so a new entry."""
    stat = model.stat()
    source = _digest(str(model.resolve()))
    identity = _digest(f"{stat.st_size} {stat.st_mtime_ns} {PATCH_VERSION}")
    return (cache or cache_dir()) / f"{source}-{identity}.onnx"


def store(entry: Path, patched: bytes) -> bool:
    """Writes `patched` to `entry` atomically (a temp file of its own, then os.replace: two
    agents starting together, or a crash, never leave half a file under the entry's name),
    then cleans the folder. False, with a debug log, if it cannot be written."""
    temp: str | None = None
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=entry.name + ".", suffix=".tmp", dir=entry.parent)
        with os.fdopen(handle, "wb") as out:
            out.write(patched)
        os.replace(temp, entry)
    except OSError as error:
        log.debug("could not keep the patched Kokoro graph in %s (%s); it is patched again at "
                  "the next start", entry.parent, error)
        if temp is not None:
            discard(Path(temp))
        return False
    clean(entry)
    return True


def discard(entry: Path) -> None:
    """Removes a cache file, if it can (a read-only cache keeps it; it is never trusted alone:
    a file that does not load is patched again)."""
    try:
        entry.unlink(missing_ok=True)
    except OSError as error:
        log.debug("could not remove %s (%s)", entry, error)


def mark_used(entry: Path) -> None:
    """Newest first when the folder is cleaned: the graph loaded last is kept last."""
    with contextlib.suppress(OSError):  # a read-only cache: then nothing is cleaned either
        os.utime(entry)


def clean(keep: Path) -> None:
    """Leaves `keep`; removes the other entries of its source (an older model file, an older
    patch), temp files a crash left, and the least recently used entries beyond
    CACHE_ENTRIES. Another agent's write in progress (a fresh temp file) is left alone."""
    source = keep.name.split("-")[0] + "-"
    others: list[tuple[float, Path]] = []
    try:
        listing = list(keep.parent.iterdir())
    except OSError:
        return
    now = time.time()
    for path in listing:
        try:
            if path == keep:
                continue
            if path.suffix == ".tmp":
                if now - path.stat().st_mtime > STALE_TEMP_SECONDS:
                    discard(path)
            elif path.suffix == ".onnx":
                if path.name.startswith(source):
                    discard(path)
                else:
                    others.append((path.stat().st_mtime, path))
        except OSError:  # removed meanwhile by another agent cleaning the same folder
            continue
    for _, path in sorted(others, reverse=True)[CACHE_ENTRIES - 1:]:
        discard(path)
