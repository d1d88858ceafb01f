"""Vectorised unit-quaternion maths, Hamilton convention ``[w, x, y, z]``.

A quaternion ``q`` maps sensor-frame vectors to the reference frame: ``v_ref = q * v * q^-1``.
Hot-path kernels (suffix ``_soa``) take component-major arrays -- quaternions shaped (4, N),
vectors (3, N) -- so every arithmetic step runs on contiguous memory; the ``(N, 4)``/``(N, 3)``
functions are thin wrappers for callers.
Method: standard quaternion kinematics (Solà 2017, "Quaternion kinematics for the error-state
Kalman filter", arXiv:1711.02508); the cumulative product is a blocked prefix scan
(Blelloch 1990, "Prefix sums and their applications").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

IDENTITY: FloatArray = np.array([1.0, 0.0, 0.0, 0.0])


# ---------------------------------------------------------------- component-major kernels


def qmul_soa(a: FloatArray, b: FloatArray) -> FloatArray:
    """Hamilton product of component-major quaternions (4, N) (either may be (4, 1))."""
    aw, ax, ay, az = a[0], a[1], a[2], a[3]
    bw, bx, by, bz = b[0], b[1], b[2], b[3]
    n = max(np.shape(aw)[-1] if np.ndim(aw) else 1, np.shape(bw)[-1] if np.ndim(bw) else 1)
    out = np.empty((4, n))
    out[0] = aw * bw - ax * bx - ay * by - az * bz
    out[1] = aw * bx + ax * bw + ay * bz - az * by
    out[2] = aw * by - ax * bz + ay * bw + az * bx
    out[3] = aw * bz + ax * by - ay * bx + az * bw
    return out


def qrot_soa(q: FloatArray, v: FloatArray, inverse: bool = False) -> FloatArray:
    """Rotate component-major vectors (3, N) by quaternions (4, N); ``inverse`` uses ``q^-1``."""
    w = q[0]
    s = -1.0 if inverse else 1.0
    x, y, z = s * q[1], s * q[2], s * q[3]
    vx, vy, vz = v[0], v[1], v[2]
    # t = 2 u x v ; v' = v + w t + u x t
    tx = 2.0 * (y * vz - z * vy)
    ty = 2.0 * (z * vx - x * vz)
    tz = 2.0 * (x * vy - y * vx)
    out = np.empty((3, v.shape[1]))
    out[0] = vx + w * tx + (y * tz - z * ty)
    out[1] = vy + w * ty + (z * tx - x * tz)
    out[2] = vz + w * tz + (x * ty - y * tx)
    return out


def from_rotvec_soa(rv: FloatArray) -> FloatArray:
    """Exponential map of component-major rotation vectors (3, N) in rad to quaternions (4, N).

    Uses the Taylor series of cos(h) and sin(h)/h in h^2 (h = angle/2), exact to machine
    precision for h <= 0.1 (a per-sample increment of 11 deg), and the trigonometric form for
    the rare larger increments.
    """
    rx, ry, rz = rv[0], rv[1], rv[2]
    h2 = 0.25 * (rx * rx + ry * ry + rz * rz)
    out = np.empty((4, rv.shape[1]))
    # cos h = 1 - h2/2 + h2^2/24 - h2^3/720 + h2^4/40320
    out[0] = 1.0 + h2 * (-0.5 + h2 * (1.0 / 24.0 + h2 * (-1.0 / 720.0 + h2 * (1.0 / 40320.0))))
    # sin(h)/(2h) = 0.5 * (1 - h2/6 + h2^2/120 - h2^3/5040 + h2^4/362880)
    s = 0.5 + h2 * (-1.0 / 12.0 + h2 * (1.0 / 240.0 + h2 * (-1.0 / 10080.0 + h2 * (1.0 / 725760.0))))
    big = h2 > 0.01
    if np.any(big):
        h = np.sqrt(h2[big])
        out[0, big] = np.cos(h)
        s[big] = 0.5 * np.sin(h) / h
    out[1] = rx * s
    out[2] = ry * s
    out[3] = rz * s
    return out


def _scan_inplace(w: FloatArray, x: FloatArray, y: FloatArray, z: FloatArray) -> None:
    """Inclusive running product along axis 0 of component arrays shaped (K, M), in place."""
    for j in range(1, w.shape[0]):
        pw, px, py, pz = w[j - 1], x[j - 1], y[j - 1], z[j - 1]
        bw, bx, by, bz = w[j], x[j], y[j], z[j]
        nw = pw * bw - px * bx - py * by - pz * bz
        nx = pw * bx + px * bw + py * bz - pz * by
        ny = pw * by - px * bz + py * bw + pz * bx
        nz = pw * bz + px * by - py * bx + pz * bw
        w[j], x[j], y[j], z[j] = nw, nx, ny, nz


def cumulative_product_soa(dq: FloatArray, block: int = 32) -> FloatArray:
    """Prefix products ``q_k = dq_0 * dq_1 * ... * dq_k`` of component-major quaternions (4, N).

    Blocked scan: all blocks of ``block`` samples are scanned together (one vectorised row per
    position in the block), block totals are scanned recursively, then each block is
    left-multiplied by the product of all preceding blocks. Python iterations are
    O(block * log_block(N)), independent of the sample count otherwise.
    """
    n = dq.shape[1]
    if n == 0:
        return np.empty((4, 0))
    if n <= block:
        comps = [np.array(dq[i, :, None]) for i in range(4)]
        _scan_inplace(*comps)
        return np.stack([c[:, 0] for c in comps])
    m = -(-n // block)
    comps = []
    for i in range(4):
        c = np.empty(m * block)
        c[:n] = dq[i]
        c[n:] = IDENTITY[i]
        comps.append(np.ascontiguousarray(c.reshape(m, block).T))  # (block, m)
    _scan_inplace(*comps)
    totals = np.stack([c[-1] for c in comps])  # (4, m)
    prefix = cumulative_product_soa(totals, block)
    lead = np.empty((4, m))
    lead[:, 0] = IDENTITY
    lead[:, 1:] = prefix[:, :-1]
    lw, lx, ly, lz = lead[0], lead[1], lead[2], lead[3]
    bw, bx, by, bz = comps
    out = np.empty((4, m, block))
    out[0] = (lw * bw - lx * bx - ly * by - lz * bz).T
    out[1] = (lw * bx + lx * bw + ly * bz - lz * by).T
    out[2] = (lw * by - lx * bz + ly * bw + lz * bx).T
    out[3] = (lw * bz + lx * by - ly * bx + lz * bw).T
    return out.reshape(4, m * block)[:, :n]


def arc_to_up_soa(g: FloatArray) -> FloatArray:
    """Smallest rotations (4, N) taking unit vectors ``g`` (3, N) onto +z."""
    gx, gy, gz = g[0], g[1], g[2]
    q = np.empty((4, g.shape[1]))
    q[0] = 1.0 + gz
    q[1] = gy
    q[2] = -gx
    q[3] = 0.0
    n2 = q[0] * q[0] + gy * gy + gx * gx
    bad = n2 < 1e-18  # g antiparallel to +z: rotate by pi about x
    if np.any(bad):
        q[:, bad] = np.array([[0.0], [1.0], [0.0], [0.0]])
        n2[bad] = 1.0
    q *= 1.0 / np.sqrt(n2)
    return q


# ---------------------------------------------------------------- row-major wrappers


def qmul(a: FloatArray, b: FloatArray) -> FloatArray:
    """Row-wise Hamilton product ``a * b`` of (N, 4) or (4,) arrays (broadcasting)."""
    aw, ax, ay, az = a[..., 0], a[..., 1], a[..., 2], a[..., 3]
    bw, bx, by, bz = b[..., 0], b[..., 1], b[..., 2], b[..., 3]
    return np.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        axis=-1,
    )


def qconj(q: FloatArray) -> FloatArray:
    """Conjugate (= inverse for unit quaternions)."""
    out = np.array(q, dtype=np.float64, copy=True)
    out[..., 1:] *= -1.0
    return out


def qnormalize(q: FloatArray) -> FloatArray:
    """Scale quaternions to unit norm."""
    return np.asarray(q / np.linalg.norm(q, axis=-1, keepdims=True))


def qrot(q: FloatArray, v: FloatArray) -> FloatArray:
    """Rotate vectors ``v`` (N, 3) by unit quaternions ``q`` (N, 4): ``q * v * q^-1``."""
    q2 = np.atleast_2d(q)
    v2 = np.atleast_2d(v)
    n = max(q2.shape[0], v2.shape[0])
    out = qrot_soa(np.broadcast_to(q2, (n, 4)).T, np.ascontiguousarray(np.broadcast_to(v2, (n, 3)).T))
    return out.T.reshape((*np.broadcast_shapes(np.shape(q)[:-1], np.shape(v)[:-1]), 3))


def qrot_inv(q: FloatArray, v: FloatArray) -> FloatArray:
    """Rotate vectors by the inverse of ``q``: reference frame to sensor frame."""
    return qrot(qconj(q), v)


def from_rotvec(rv: FloatArray) -> FloatArray:
    """Exponential map: rotation vectors (N, 3) in rad to unit quaternions (N, 4)."""
    return np.ascontiguousarray(from_rotvec_soa(np.ascontiguousarray(np.asarray(rv).T)).T)


def from_axis_angle(axis: FloatArray, angle: FloatArray) -> FloatArray:
    """Quaternions for rotations by ``angle`` rad about unit ``axis`` ((3,) or (N, 3))."""
    half = 0.5 * np.asarray(angle, dtype=np.float64)
    ax = np.asarray(axis, dtype=np.float64)
    out = np.empty((*np.broadcast_shapes(half.shape, ax.shape[:-1]), 4))
    out[..., 0] = np.cos(half)
    out[..., 1:] = ax * np.sin(half)[..., None]
    return out


def cumulative_product(dq: FloatArray, block: int = 32) -> FloatArray:
    """Prefix products of (N, 4) quaternions (see :func:`cumulative_product_soa`)."""
    return np.ascontiguousarray(cumulative_product_soa(np.ascontiguousarray(dq.T), block).T)


def rotation_angle(q: FloatArray) -> FloatArray:
    """Total rotation angle (rad, in [0, pi]) of each quaternion."""
    return np.asarray(2.0 * np.arccos(np.clip(np.abs(q[..., 0]), 0.0, 1.0)))


def shortest_arc(src: FloatArray, dst: FloatArray) -> FloatArray:
    """Smallest rotations taking unit vectors ``src`` onto unit vectors ``dst`` (rows, (N, 3))."""
    s = np.atleast_2d(np.asarray(src, dtype=np.float64))
    d = np.atleast_2d(np.asarray(dst, dtype=np.float64))
    s, d = np.broadcast_arrays(s, d)
    dot = np.einsum("ij,ij->i", s, d)
    q = np.concatenate(((1.0 + dot)[:, None], np.cross(s, d)), axis=1)
    n = np.linalg.norm(q, axis=1)
    bad = n < 1e-9
    if np.any(bad):  # antiparallel: rotate by pi about any axis perpendicular to src
        perp = np.cross(s[bad], np.array([1.0, 0.0, 0.0]))
        small = np.linalg.norm(perp, axis=1) < 1e-6
        perp[small] = np.cross(s[bad][small], np.array([0.0, 1.0, 0.0]))
        q[bad, 0] = 0.0
        q[bad, 1:] = perp
        n = np.linalg.norm(q, axis=1)
    return np.asarray(q / n[:, None])


def to_rotvec_soa(q: FloatArray) -> FloatArray:
    """Logarithmic map: component-major unit quaternions (4, N) to rotation vectors (3, N)."""
    w = q[0]
    v = q[1:]
    s = np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    sign = np.where(w < 0.0, -1.0, 1.0)  # shortest rotation
    angle = 2.0 * np.arctan2(s, np.abs(w))
    scale = np.where(s > 1e-12, angle / np.maximum(s, 1e-300), 2.0) * sign
    return np.asarray(v * scale)
