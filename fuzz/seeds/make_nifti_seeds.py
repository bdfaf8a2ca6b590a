"""Writes the hostile seeds of the nifti_case fuzz target (run from fuzz/seeds/nifti_case/).

Small NIfTI files the reader must handle: orientations, NIfTI-2, a negative dimension, a bomb.
"""
import gzip
import struct


def nifti1(dims, vals, sform=None, qform=False, neg_dim=False):
    b = bytearray(352)
    struct.pack_into("<i", b, 0, 348)
    d = list(dims)
    if neg_dim:
        d[1] = -d[1]
    struct.pack_into("<8h", b, 40, 3, *d, 1, 1, 1, 1)
    struct.pack_into("<hh", b, 70, 16, 32)
    struct.pack_into("<8f", b, 76, *([1.0] * 8))
    struct.pack_into("<fff", b, 108, 352.0, 1.0, 0.0)
    if qform:
        struct.pack_into("<h", b, 252, 1)
    if sform is not None:
        struct.pack_into("<h", b, 254, 1)
        for r in range(3):
            struct.pack_into("<4f", b, 280 + 16 * r, *sform[r])
    b[344:348] = b"n+1\0"
    return bytes(b) + struct.pack("<%df" % len(vals), *vals)


def nifti2(dims, vals):
    b = bytearray(544)
    struct.pack_into("<i", b, 0, 540)
    b[4:12] = b"n+2\0\r\n\x1a\n"
    struct.pack_into("<hh", b, 12, 16, 32)
    struct.pack_into("<8q", b, 16, 3, *dims, 1, 1, 1, 1)
    struct.pack_into("<8d", b, 104, *([1.0] * 8))
    struct.pack_into("<qdd", b, 168, 544, 1.0, 0.0)
    return bytes(b) + struct.pack("<%df" % len(vals), *vals)


dims = (4, 3, 2)
vals = [float(v % 5) for v in range(24)]
ras = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
slp = [[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0]]
open("ras.nii", "wb").write(nifti1(dims, vals, sform=ras))
open("permuted.nii", "wb").write(nifti1(dims, vals, sform=slp))
open("qform.nii", "wb").write(nifti1(dims, vals, qform=True))
open("negative_dim.nii", "wb").write(nifti1(dims, vals, neg_dim=True))
open("nifti2.nii", "wb").write(nifti2(dims, vals))
bomb = nifti1((1024, 1024, 256), []) + bytes(1 << 16)
open("bomb.nii.gz", "wb").write(gzip.compress(bomb, 9))
