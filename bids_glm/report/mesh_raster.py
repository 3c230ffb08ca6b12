"""Draw a triangle mesh as pixels: orthographic projection, flat shading, depth buffer.

Each triangle is sampled on a barycentric grid fine enough that samples lie at most two
thirds of a pixel apart on screen; every sample carries its triangle's depth and colour, and the
nearest sample wins each pixel (a per-sample painter's algorithm, vectorised with numpy).
The result is an RGBA array; pixels no triangle covers are transparent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bids_glm.image.mesh import Mesh

MAX_SUBDIVISIONS = 32  # a triangle larger on screen than this many half-pixels is coarser
SHADE_RANGE = (0.35, 0.9)  # grey level of surfaces seen edge-on, and face-on


@dataclass(frozen=True)
class View:
    """An orthographic camera: the direction it looks along and its screen axes.

    Attributes
    ----------
    forward, right, up : tuple of float
        Unit vectors in mesh coordinates (mm): into the screen, to the screen's right, up.
    """

    forward: tuple[float, float, float]
    right: tuple[float, float, float]
    up: tuple[float, float, float] = (0.0, 0.0, 1.0)


# Lateral and medial views of each hemisphere (RAS coordinates: x to the right, y anterior).
LATERAL_LEFT = View(forward=(1.0, 0.0, 0.0), right=(0.0, -1.0, 0.0))
MEDIAL_LEFT = View(forward=(-1.0, 0.0, 0.0), right=(0.0, 1.0, 0.0))
LATERAL_RIGHT = View(forward=(-1.0, 0.0, 0.0), right=(0.0, 1.0, 0.0))
MEDIAL_RIGHT = View(forward=(1.0, 0.0, 0.0), right=(0.0, -1.0, 0.0))


def projected_size_mm(mesh: Mesh, view: View) -> tuple[float, float]:
    """Width and height of the mesh on screen in mm."""
    screen = mesh.vertices_mm @ np.array([view.right, view.up]).T
    return tuple(float(s) for s in np.ptp(screen, axis=0))


def render_mesh(mesh: Mesh, face_rgba: np.ndarray, view: View, px_per_mm: float) -> np.ndarray:
    """The mesh seen through ``view``, each face flat-shaded over its colour.

    Parameters
    ----------
    mesh : Mesh
    face_rgba : ndarray of uint8, shape (F, 4)
        Overlay colour per face; alpha 0 shows the grey, shaded surface.
    view : View
    px_per_mm : float
        Scale of the image.

    Returns
    -------
    ndarray of uint8, shape (H, W, 4)
        The picture (alpha 0 where no face is drawn).
    """
    axes = np.array([view.right, view.up, view.forward], dtype=np.float64)
    points = mesh.vertices_mm @ axes.T  # screen x, screen y, depth
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    width, height = (np.ceil((high - low) * px_per_mm).astype(int) + 1).tolist()
    pixels_xy = (points[:, :2] - low) * px_per_mm
    pixels_xy[:, 1] = (height - 1) - pixels_xy[:, 1]  # image rows go down
    corners = pixels_xy[mesh.triangles]  # (F, 3, 2)
    depth = points[mesh.triangles, 2]  # (F, 3)
    colours = _shaded(mesh, view, face_rgba)
    image = np.zeros((height, width, 4), dtype=np.uint8)
    nearest = np.full(height * width, np.inf)
    edge_px = np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).max(axis=1)
    steps = np.clip(np.ceil(edge_px * 1.5).astype(int), 1, MAX_SUBDIVISIONS)
    for n in np.unique(steps):
        faces = np.flatnonzero(steps == n)
        weights = _barycentric_grid(int(n))  # (K, 3)
        xy = np.einsum("kc,fcd->fkd", weights, corners[faces]).reshape(-1, 2)
        z = np.einsum("kc,fc->fk", weights, depth[faces]).ravel()
        face = np.repeat(faces, len(weights))
        column = np.clip(np.rint(xy[:, 0]).astype(int), 0, width - 1)
        row = np.clip(np.rint(xy[:, 1]).astype(int), 0, height - 1)
        _draw_nearest(image.reshape(-1, 4), nearest, row * width + column, z, colours[face])
    return image


def _draw_nearest(image, nearest, pixel, depth, rgba) -> None:
    """Write each pixel's nearest sample (smallest depth) where it is nearer than before."""
    before = nearest.copy()
    np.minimum.at(nearest, pixel, depth)
    won = (depth == nearest[pixel]) & (depth < before[pixel])
    image[pixel[won]] = rgba[won]


def _barycentric_grid(n: int) -> np.ndarray:
    """Barycentric weights of the points ``(i/n, j/n)``, ``i + j <= n``, of a triangle."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = (i + j) <= n
    a, b = i[keep] / n, j[keep] / n
    return np.stack([1.0 - a - b, a, b], axis=1)


def _shaded(mesh: Mesh, view: View, face_rgba: np.ndarray) -> np.ndarray:
    """Face colours: the overlay where opaque, else grey by the angle to the viewer."""
    a, b, c = (mesh.vertices_mm[mesh.triangles[:, k]] for k in range(3))
    normals = np.cross(b - a, c - a)
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    facing = np.abs(normals @ np.asarray(view.forward))
    dark, light = SHADE_RANGE
    grey = np.rint(255 * (dark + (light - dark) * facing)).astype(np.uint8)
    colours = np.repeat(grey[:, None], 4, axis=1)
    colours[:, 3] = 255
    overlay = face_rgba[:, 3] > 0
    shade = (0.75 + 0.25 * facing[overlay])[:, None]
    colours[overlay, :3] = np.rint(face_rgba[overlay, :3] * shade).astype(np.uint8)
    return colours
