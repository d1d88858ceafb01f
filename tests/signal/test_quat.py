from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from motion.quat import (
    IDENTITY,
    cumulative_product,
    from_rotvec,
    qconj,
    qmul,
    qrot,
    qrot_inv,
    shortest_arc,
    to_rotvec_soa,
)


def test_from_rotvec_matches_scipy_including_large_angles() -> None:
    rng = np.random.default_rng(0)
    rv = rng.normal(size=(500, 3)) * 0.2
    rv[:5] *= 20.0  # a few large increments take the trigonometric path
    q = from_rotvec(rv)
    ref = Rotation.from_rotvec(rv).as_quat(scalar_first=True)
    ref *= np.sign(ref[:, :1]) * np.sign(q[:, :1])
    np.testing.assert_allclose(q, ref, atol=1e-12)


def test_rotation_and_inverse() -> None:
    rng = np.random.default_rng(1)
    q = from_rotvec(rng.normal(size=(100, 3)))
    v = rng.normal(size=(100, 3))
    np.testing.assert_allclose(qrot(q, v), Rotation.from_quat(q, scalar_first=True).apply(v), atol=1e-12)
    np.testing.assert_allclose(qrot_inv(q, qrot(q, v)), v, atol=1e-12)
    np.testing.assert_allclose(qmul(q, qconj(q)), np.tile(IDENTITY, (100, 1)), atol=1e-12)


def test_log_map_inverts_exp_map() -> None:
    rv = np.random.default_rng(2).normal(size=(200, 3))
    rv *= np.minimum(1.0, 3.0 / np.linalg.norm(rv, axis=1, keepdims=True))  # angles below pi
    back = to_rotvec_soa(np.ascontiguousarray(from_rotvec(rv).T)).T
    np.testing.assert_allclose(back, rv, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=1, max_value=3000), block=st.sampled_from([2, 7, 32, 64]),
       seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_cumulative_product_equals_sequential(n: int, block: int, seed: int) -> None:
    dq = from_rotvec(np.random.default_rng(seed).normal(size=(n, 3)) * 0.1)
    out = cumulative_product(dq, block)
    q = IDENTITY.copy()
    ref = np.empty((n, 4))
    for i in range(n):
        q = qmul(q, dq[i])
        ref[i] = q
    np.testing.assert_allclose(out, ref, atol=1e-10)


def test_shortest_arc_including_antiparallel() -> None:
    rng = np.random.default_rng(3)
    src = rng.normal(size=(50, 3))
    src /= np.linalg.norm(src, axis=1, keepdims=True)
    src[0] = [0.0, 0.0, -1.0]
    dst = np.array([0.0, 0.0, 1.0])
    q = shortest_arc(src, np.broadcast_to(dst, src.shape))
    np.testing.assert_allclose(qrot(q, src), np.broadcast_to(dst, src.shape), atol=1e-12)
