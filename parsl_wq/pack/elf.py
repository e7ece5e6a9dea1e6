"""Rewrite the RUNPATH (or RPATH) of an ELF file in place, without patchelf.

Interpreters built by pyenv and similar tools carry an absolute RUNPATH such as
``/home/u/.pyenv/versions/3.11.7/lib``. A copy of such an interpreter keeps
loading the original ``libpython`` when it is still there, and fails to start
where it is not. ``$ORIGIN``-relative paths make the copy load its own.

The new value must not be longer than the old one: it is written over the old
string in the dynamic string table and padded with NUL bytes.
"""

import struct
from typing import Callable, Optional

PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 5, 15, 29


def rewrite_runpath(data: bytes, rewrite: Callable[[str], str]) -> bytes:
    """``data`` with each RUNPATH/RPATH string replaced by ``rewrite(old)``; unchanged if not ELF.

    Raises ValueError if a new value is longer than the old one.
    """
    layout = _layout(data)
    if layout is None:
        return data
    endian, wide = layout
    loads, dynamic = _segments(data, endian, wide)
    if dynamic is None:
        return data
    entries = _dynamic_entries(data, endian, wide, *dynamic)
    strtab = _file_offset(loads, entries.get(DT_STRTAB, [None])[0])
    if strtab is None:
        return data
    patched = bytearray(data)
    for tag in (DT_RUNPATH, DT_RPATH):
        for offset in entries.get(tag, []):
            start = strtab + offset
            end = data.index(b"\0", start)
            old = data[start:end].decode()
            new = rewrite(old).encode()
            if len(new) > len(old):
                raise ValueError(f"new runpath {new.decode()!r} is longer than the old {old!r}")
            patched[start:end] = new + b"\0" * (len(old) - len(new))
    return bytes(patched)


def runpath(data: bytes) -> Optional[str]:
    """The RUNPATH (else RPATH) string of an ELF file, or None."""
    found = []
    rewrite_runpath(data, lambda old: found.append(old) or old)
    return found[0] if found else None


def _layout(data: bytes):
    if data[:4] != b"\x7fELF" or len(data) < 64:
        return None
    wide = data[4] == 2                 # ELFCLASS64
    endian = "<" if data[5] == 1 else ">"
    return endian, wide


def _segments(data: bytes, endian: str, wide: bool):
    if wide:
        phoff, = struct.unpack_from(endian + "Q", data, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 54)
    else:
        phoff, = struct.unpack_from(endian + "I", data, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 42)
    loads, dynamic = [], None
    for i in range(phnum):
        at = phoff + i * phentsize
        if wide:
            p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(endian + "IIQQQQ", data, at)
        else:
            p_type, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(endian + "IIIII", data, at)
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    return loads, dynamic


def _dynamic_entries(data: bytes, endian: str, wide: bool, offset: int, size: int):
    fmt = endian + ("qQ" if wide else "iI")
    step = struct.calcsize(fmt)
    entries = {}
    for at in range(offset, offset + size, step):
        tag, value = struct.unpack_from(fmt, data, at)
        if tag == DT_NULL:
            break
        entries.setdefault(tag, []).append(value)
    return entries


def _file_offset(loads, address: Optional[int]) -> Optional[int]:
    if address is None:
        return None
    for vaddr, offset, size in loads:
        if vaddr <= address < vaddr + size:
            return address - vaddr + offset
    return None
