"""Isotropic Gaussian smoothing in millimetres, on the mask's bounding box, as banded products.

The kernel is scipy's sampled Gaussian (``gaussian_filter1d``: radius ``int(4 sigma + 0.5)``,
weights normalised to sum 1, ``reflect`` boundaries), which is also nilearn's. Smoothing one
axis of a box is a product with a banded ``(n, n)`` matrix; only the rows a later step needs
are formed (the mask's bounding box along that axis), and the band is cut into diagonal blocks
so each block is one small dense matrix product (BLAS, no Python loop over voxels). Sums are
formed in float64 and each pass is rounded to float32, as scipy does on the float32 volumes that
nilearn smooths: the smoothed data are bit-identical to nilearn's, which matters because the
AR(1) estimate, binned to 0.01, amplifies any rounding difference of the data. (DESIGN.md
asks for float32 smoothing; done in float32 (sgemm) it is ~1.5 ms a volume faster on the MNI
brain, but twice as many voxels then change AR(1) bin against nilearn (63 more per contrast,
|dz| up to 0.04) and the tests that compare z maps with nilearn's fail: measured in session 9.)
Each pass copies a group of its lines into float64 in the order they lie in memory,
multiplies them by the transposed blocks (``rows @ block.T``: ~1.8x faster than
``block @ rows.T`` on a group of 512 lines, the large operand then being read row by row)
and writes its axis as the fastest one, so the passes take the volume ``(z, y, x)`` ->
``(z, y, x')`` -> ``(z, x', y')`` -> ``(x', y', z')`` (C order), the result in the C order
that in-mask voxels are listed in. The first pass's lines are contiguous; the next two
passes' lines run across memory, so their group is converted plane by plane (contiguous
reads) and BLAS reads the copy transposed: converting them line by line, a strided read per
value, took twice the products' time (800-volume run: stream 6.06 -> 5.21 s, session 16).

Given the voxels whose smoothed values are wanted (a brain mask: about half its bounding box),
each pass computes only what they depend on: per group of lines, the range of lines and of
output rows that reach a wanted voxel (~22 % less work on the MNI brain). The values left
out are stale but finite (buffers start at zero), and reach wanted voxels only through the
zeros of the banded blocks, so wanted values are unchanged to the bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FWHM_PER_SIGMA = float(np.sqrt(8.0 * np.log(2.0)))
TRUNCATE_SIGMAS = 4.0  # scipy's default support of the sampled kernel
# Output rows per dense block, whatever the kernel's width: a block of 8 rows reads 8 + 2 r
# inputs (r: the kernel's radius), so larger blocks multiply more zeros, and OpenBLAS's small
# kernels are fastest at 8 columns. On a 2 mm MNI volume (`benchmarks/smoothing_blocks.py`)
# 8 rows beat 4, 6, 12, 16 and 24 at FWHM 3, 5, 8 and 12 mm (r = 3, 4, 7, 10): at 5 mm 2.86 ms
# a volume against 3.40 with the 16 rows used before; at 8 mm 3.59 against 4.49 at 16 rows and
# 7.14 at 24 (the rule before, max(16, 4 r), gave 28).
BLOCK_ROWS = 8
# Lines smoothed together (bounds the float64 scratch per thread). With blocks of 8 rows, 2048
# lines were faster than 512 and 1024 in the forked smoothing child too (200 volumes: stream
# -0.11 s against 512, 8 interleaved pairs), and threads that share the GIL with reading and
# summing threads gain from 4x fewer numpy calls than 512 take (each a release and retake of
# that GIL: 800-volume run 0.3-0.7 s less in 5 of 5 pairs, session 9).
LINES_PER_GROUP = 2048


def voxel_sizes_mm(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (mm) from the columns of an affine's 3x3 part."""
    return np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))


def sigma_voxels(fwhm_mm: float, affine: np.ndarray) -> np.ndarray:
    """Per-axis Gaussian sigma in voxels for an isotropic FWHM in mm (anisotropic voxels)."""
    return fwhm_mm / (FWHM_PER_SIGMA * voxel_sizes_mm(affine))


def kernel_radius_voxels(sigma_vox: np.ndarray) -> np.ndarray:
    """Half-width of scipy's sampled Gaussian kernel per axis (``int(4 sigma + 0.5)``)."""
    return np.array([int(TRUNCATE_SIGMAS * s + 0.5) if s > 0 else 0 for s in sigma_vox])


def gaussian_weights(sigma_vox: float) -> np.ndarray:
    """scipy's sampled, unit-sum Gaussian kernel (float64, length ``2 radius + 1``)."""
    if sigma_vox <= 0:
        return np.ones(1)
    radius = int(TRUNCATE_SIGMAS * sigma_vox + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma_vox) ** 2)
    return weights / weights.sum()


def axis_operator(n_voxels: int, sigma_vox: float) -> np.ndarray:
    """Matrix ``K`` (n, n) with ``K @ line`` = ``gaussian_filter1d(line, sigma)`` (reflect).

    Parameters
    ----------
    n_voxels : int
        Length of the axis.
    sigma_vox : float
        Sigma in voxels; 0 gives the identity.

    Returns
    -------
    ndarray, shape (n_voxels, n_voxels), float64
    """
    weights = gaussian_weights(sigma_vox)
    radius = weights.size // 2
    rows = np.repeat(np.arange(n_voxels), weights.size)
    columns = (np.arange(n_voxels)[:, None] + np.arange(-radius, radius + 1)).ravel()
    period = 2 * n_voxels  # reflect: ... c b a | a b c ... z y x | x y z ...
    columns = np.mod(columns, period)
    columns = np.where(columns >= n_voxels, period - 1 - columns, columns)
    operator = np.zeros((n_voxels, n_voxels))
    np.add.at(operator, (rows, columns), np.tile(weights, n_voxels))
    return operator


@dataclass(frozen=True)
class LineGroup:
    """Lines one pass smooths together, and the output rows it forms for them.

    Attributes
    ----------
    rows, lines : slice
        Of the first and second axes of the pass's ``(m, k, n_in)`` lines.
    blocks : slice
        Of the pass's blocks: consecutive output rows.
    """

    rows: slice
    lines: slice
    blocks: slice


@dataclass(frozen=True)
class AxisPass:
    """Smoothing of one axis restricted to the output rows ``keep``, as dense blocks.

    Attributes
    ----------
    blocks : tuple of (int, int, int, int, ndarray)
        ``(out_start, out_stop, in_start, in_stop, matrix)``: output rows (relative to
        ``keep.start``) computed from input columns; ``matrix`` is the block transposed,
        ``(in, out)`` float64 C-contiguous.
    n_out : int
        Number of output rows (``keep`` length).
    groups : tuple of LineGroup
        What is computed, group by group (`plan_line_groups`).
    """

    blocks: tuple[tuple[int, int, int, int, np.ndarray], ...]
    n_out: int
    groups: tuple[LineGroup, ...]

    def apply(
        self, lines: np.ndarray, workspace: SmoothingWorkspace, target: np.ndarray
    ) -> np.ndarray:
        """Smooth the lines of ``lines`` its groups name; return ``(m, k, n_out)`` float32.

        ``lines`` is ``(m, k, n_in)`` (``m * k`` lines; a strided view of a volume's box is
        read without a copy), float32 or integers of up to 16 bits.

        Sums are formed in float64 and rounded to float32 once, as scipy's ``correlate1d``
        does on a float32 array, so the result is scipy's to the last bit (barring ties);
        each line's sums do not depend on the grouping, which bounds the float64 scratch.
        The result is a view of ``target`` (1-D float32, not overlapping ``lines``: groups
        are written while later ones are still to be read), valid until its next use; the
        values no group forms are left as they were.
        """
        n_rows, n_lines, n_in = lines.shape
        rounded = target[: n_rows * n_lines * self.n_out].reshape(n_rows, n_lines, self.n_out)
        along_memory = lines.strides[-1] == lines.itemsize
        for group in self.groups:
            part = lines[group.rows, group.lines]
            if along_memory:
                wide = workspace.wide[: part.size].reshape(part.shape)
                np.copyto(wide, part)  # any real dtype; float32 and smaller integers are exact
                wide = wide.reshape(-1, n_in)
            else:  # copy in the lines' memory order; the product reads the transpose
                across = part.transpose(2, 0, 1)
                wide = workspace.wide[: part.size].reshape(across.shape)
                np.copyto(wide, across)
                wide = wide.reshape(n_in, -1).T
            blocks = self.blocks[group.blocks]
            first, stop = blocks[0][0], blocks[-1][1]
            out = workspace.sums[: wide.shape[0] * (stop - first)].reshape(-1, stop - first)
            for out_start, out_stop, in_start, in_stop, matrix in blocks:
                columns = out[:, out_start - first : out_stop - first]
                np.matmul(wide[:, in_start:in_stop], matrix, out=columns)
            formed = out.reshape(*part.shape[:2], stop - first)
            np.copyto(rounded[group.rows, group.lines, first:stop], formed)
        return rounded


@dataclass(frozen=True)
class SmoothingWorkspace:
    """Reusable buffers of one thread's smoothing (allocating them per volume costs more
    than the smoothing, in page faults).

    Attributes
    ----------
    wide : ndarray, float64, 1-D
        A group of a pass's input lines in float64.
    sums : ndarray, float64, 1-D
        That group's sums.
    rounded, spare : ndarray, float32, 1-D
        Passes' outputs, rounded: each pass reads one and writes the other. ``spare`` is
        None where the caller lets the smoothed box be overwritten (it then serves as one);
        it must then start finite, like ``rounded`` (values a pass leaves out are read by
        the next one, multiplied by zero).
    """

    wide: np.ndarray
    sums: np.ndarray
    rounded: np.ndarray
    spare: np.ndarray | None


def axis_blocks(
    n_voxels: int, keep: slice, sigma_vox: float
) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """Blocks of the banded smoothing operator of one axis, rows ``keep`` only
    (`AxisPass.blocks`)."""
    operator = axis_operator(n_voxels, sigma_vox)[keep]
    blocks = []
    for start in range(0, operator.shape[0], BLOCK_ROWS):
        part = operator[start : start + BLOCK_ROWS]
        used = np.flatnonzero(part.any(axis=0))
        in_start, in_stop = int(used[0]), int(used[-1]) + 1
        matrix = np.ascontiguousarray(part[:, in_start:in_stop].T)  # (in, out): rows @ matrix
        blocks.append((start, start + part.shape[0], in_start, in_stop, matrix))
    return tuple(blocks)


def plan_line_groups(
    blocks: tuple[tuple[int, int, int, int, np.ndarray], ...],
    lines_shape: tuple[int, int],
    lines_per_group: int,
    wanted: np.ndarray | None = None,
) -> tuple[LineGroup, ...]:
    """Groups of whole rows of a pass's ``(m, k)`` lines, about ``lines_per_group`` lines each.

    With ``wanted`` (bool, ``(m, k, n_out)``: the outputs a later step reads), each group is
    cut to its range of lines and blocks that hold a wanted output; groups without one are
    dropped. Without it, every line and block.
    """
    n_rows, n_lines = lines_shape
    rows_per_group = max(lines_per_group // max(n_lines, 1), 1)
    starts = np.array([block[0] for block in blocks])
    stops = np.array([block[1] for block in blocks])
    groups = []
    for first in range(0, n_rows, rows_per_group):
        rows = slice(first, min(first + rows_per_group, n_rows))
        if wanted is None:
            groups.append(LineGroup(rows, slice(0, n_lines), slice(0, len(blocks))))
            continue
        part = wanted[rows]
        wanted_lines = np.flatnonzero(part.any(axis=(0, 2)))
        if wanted_lines.size == 0:
            continue
        outputs = np.flatnonzero(part.any(axis=(0, 1)))
        first_block = int(np.searchsorted(stops, outputs[0], side="right"))
        stop_block = int(np.searchsorted(starts, outputs[-1], side="right"))
        lines = slice(int(wanted_lines[0]), int(wanted_lines[-1]) + 1)
        groups.append(LineGroup(rows, lines, slice(first_block, stop_block)))
    return tuple(groups)


def _dilated(wanted: np.ndarray, axis: int, radius: int) -> np.ndarray:
    """``wanted`` grown by ``radius`` voxels both ways along ``axis``."""
    grown = wanted.copy()
    for shift in range(1, radius + 1):
        later, earlier = [slice(None)] * wanted.ndim, [slice(None)] * wanted.ndim
        later[axis], earlier[axis] = slice(shift, None), slice(None, -shift)
        grown[tuple(later)] |= wanted[tuple(earlier)]
        grown[tuple(earlier)] |= wanted[tuple(later)]
    return grown


def _embedded(wanted: np.ndarray, axis: int, start: int, length: int) -> np.ndarray:
    """``wanted`` placed at ``start`` of a zero array ``length`` long along ``axis``."""
    shape = list(wanted.shape)
    shape[axis] = length
    placed = np.zeros(shape, dtype=bool)
    where = [slice(None)] * wanted.ndim
    where[axis] = slice(start, start + wanted.shape[axis])
    placed[tuple(where)] = wanted
    return placed


def _wanted_per_pass(
    wanted: np.ndarray,
    in_shape: tuple[int, int, int],
    keep: tuple[slice, slice, slice],
    sigma_vox: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The outputs of each pass that the wanted voxels depend on, in the passes' layouts
    ``(z, y, x')``, ``(z, x', y')`` and ``(x', y', z')``."""
    radius = [gaussian_weights(float(sigma)).size // 2 for sigma in sigma_vox]
    after_y = _dilated(_embedded(wanted, 2, keep[2].start, in_shape[2]), 2, radius[2])
    after_x = _dilated(_embedded(after_y, 1, keep[1].start, in_shape[1]), 1, radius[1])
    return after_x.transpose(2, 1, 0), after_y.transpose(2, 0, 1), wanted


@dataclass(frozen=True)
class BoxSmoother:
    """Gaussian smoothing of a box, keeping an inner region (the mask's bounding box).

    Attributes
    ----------
    passes : tuple of AxisPass
        The x, y and z passes.
    in_shape : tuple of int
        Box shape (x, y, z).
    out_shape : tuple of int
        Kept region shape (x, y, z).
    lines_per_group : int
        About how many lines the passes smooth at once (`LINES_PER_GROUP`).
    """

    passes: tuple[AxisPass, AxisPass, AxisPass]
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    lines_per_group: int = LINES_PER_GROUP

    def apply(self, box: np.ndarray, workspace: SmoothingWorkspace | None = None) -> np.ndarray:
        """Smooth a box volume; return the kept region.

        Parameters
        ----------
        box : ndarray, shape ``in_shape``
            float32 in Fortran order, or any view of float32 or integers of up to 16 bits
            (exact in float64, as scipy's float32 copy is) with a ``workspace`` that has a
            ``spare`` buffer. Not modified, unless ``workspace`` has no ``spare`` buffer: the
            box is then overwritten (it is not read after the first pass).
        workspace : SmoothingWorkspace, optional
            Buffers from `workspace` (reused across calls by one thread); new ones if None.

        Returns
        -------
        ndarray, shape ``out_shape``, float32, C order
            Equal (bit for bit, barring rounding ties) to ``gaussian_filter1d`` along x, y
            and z on the box (reflected boundaries), cropped to the kept region. A view of
            the workspace, valid until its next use.
        """
        workspace = workspace or self.workspace()
        first, second = workspace.rounded, workspace.spare  # each pass reads one, writes other
        if second is None:
            second = box.reshape(-1, order="F")  # a view: box is contiguous (Fortran)
        lines = self.passes[0].apply(box.T, workspace, first)  # (z, y, x) -> (z, y, x')
        lines = self.passes[1].apply(lines.transpose(0, 2, 1), workspace, second)  # (z, x', y')
        return self.passes[2].apply(lines.transpose(1, 2, 0), workspace, first)  # (x', y', z')

    def workspace(self, spare: bool = True) -> SmoothingWorkspace:
        """Buffers for `apply`, large enough for every pass (one set per thread).

        Without ``spare``, `apply` overwrites the box it smooths instead of a buffer of
        its own (one volume's worth of memory less per thread).
        """
        n_in = int(np.prod(self.in_shape))
        longest = max(self.in_shape)
        n_wide = max(self.lines_per_group, longest) * longest
        return SmoothingWorkspace(
            wide=np.empty(n_wide),
            sums=np.empty(n_wide),
            rounded=np.zeros(n_in, dtype=np.float32),
            spare=np.zeros(n_in, dtype=np.float32) if spare else None,
        )


def plan_box_smoother(
    in_shape: tuple[int, int, int],
    keep: tuple[slice, slice, slice],
    sigma_vox: np.ndarray,
    wanted: np.ndarray | None = None,
    lines_per_group: int = LINES_PER_GROUP,
) -> BoxSmoother:
    """Prepare the smoothing of a box of ``in_shape`` voxels whose region ``keep`` is kept.

    Parameters
    ----------
    in_shape : tuple of int
        Shape (x, y, z) of the box that is smoothed (reflected at its faces).
    keep : tuple of slice
        Region of the box whose smoothed values are wanted (slices with explicit bounds).
    sigma_vox : ndarray, shape (3,)
        Sigma per axis in voxels; zero leaves an axis unsmoothed.
    wanted : ndarray of bool, optional
        The voxels of the kept region whose values are read (e.g. a mask); the others
        are then left out where they can be (their values are not defined). All if None.
    lines_per_group : int
        See `LINES_PER_GROUP`; the values do not depend on it.

    Returns
    -------
    BoxSmoother
    """
    blocks = [
        axis_blocks(n, region, float(sigma))
        for n, region, sigma in zip(in_shape, keep, sigma_vox, strict=True)
    ]
    out_shape = tuple(region.stop - region.start for region in keep)
    (_, n_y, n_z), (out_x, out_y, _) = in_shape, out_shape
    lines_shapes = ((n_z, n_y), (n_z, out_x), (out_x, out_y))
    if wanted is None:
        wanted_per_pass = (None, None, None)
    else:
        wanted_per_pass = _wanted_per_pass(np.asarray(wanted, bool), in_shape, keep, sigma_vox)
    passes = tuple(
        AxisPass(
            blocks=pass_blocks,
            n_out=pass_blocks[-1][1],
            groups=plan_line_groups(pass_blocks, shape, lines_per_group, pass_wanted),
        )
        for pass_blocks, shape, pass_wanted in zip(
            blocks, lines_shapes, wanted_per_pass, strict=True
        )
    )
    return BoxSmoother(passes, tuple(in_shape), out_shape, lines_per_group)
