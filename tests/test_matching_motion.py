import numpy as np

from mot_dinov3 import matching, motion


def test_iou_matrix_known_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(matching.iou_matrix(a, b), [[1.0, 50 / 150, 0.0]], atol=1e-6)
    assert matching.iou_matrix(a, np.zeros((0, 4))).shape == (1, 0)


def test_fuse_trusts_appearance_only_when_close_and_similar():
    iou = np.array([[0.6, 0.6, 0.1]])
    app = np.array([[0.1, 0.5, 0.1]])  # similar / dissimilar / similar but far
    cost = matching.fuse_iou_appearance(iou, app, None, proximity_thresh=0.5, appearance_thresh=0.25)
    np.testing.assert_allclose(cost, [[0.05, 0.4, 0.9]], atol=1e-6)
    scored = matching.fuse_iou_appearance(iou, None, np.array([0.5, 1.0, 1.0]), 0.5, 0.25)
    np.testing.assert_allclose(scored, [[0.7, 0.4, 0.9]], atol=1e-6)


def test_hungarian_beats_greedy_and_respects_threshold():
    cost = np.array([[0.1, 0.2], [0.15, 0.9]])
    m, ur, uc = matching.linear_assignment(cost, 0.5, hungarian=True)
    assert sorted(map(tuple, m.tolist())) == [(0, 1), (1, 0)]
    g, gur, guc = matching.linear_assignment(cost, 0.5, hungarian=False)
    assert g.tolist() == [[0, 0]] and gur.tolist() == [1] and guc.tolist() == [1]
    m, ur, uc = matching.linear_assignment(np.array([[0.9]]), 0.5)
    assert len(m) == 0 and ur.tolist() == [0] and uc.tolist() == [0]


def test_kalman_learns_constant_velocity():
    mean, cov = motion.initiate(np.array([100.0, 50.0, 20.0, 40.0]))
    for k in range(1, 15):
        m, c = motion.predict(mean[None], cov[None])
        means, covs = motion.update(m, c, np.array([[100.0 + 5 * k, 50.0, 20.0, 40.0]]))
        mean, cov = means[0], covs[0]
    pred, _ = motion.predict(mean[None], cov[None])
    assert abs(pred[0, 0] - (100 + 5 * 15)) < 1.0 and abs(pred[0, 4] - 5.0) < 0.5
    np.testing.assert_allclose(motion.xywh_to_xyxy(motion.xyxy_to_xywh(np.array([1, 2, 5, 9]))), [1, 2, 5, 9])


def test_gating_distance_is_the_squared_mahalanobis_distance_of_the_centre():
    mean, cov = motion.initiate(np.array([100.0, 50.0, 20.0, 40.0]))
    # position variances (2 * w / 20)^2 = 4 and (2 * h / 20)^2 = 16, plus measurement noise 1 and 4
    d2 = motion.gating_distance(mean[None], cov[None], np.array([[105.0, 50.0], [100.0, 40.0], [100.0, 50.0]]))
    assert d2.shape == (1, 3)
    assert np.allclose(d2[0], [25 / 5, 100 / 20, 0.0])
    # the gate widens while a track is predicted without observations
    means, covs = mean[None], cov[None]
    for _ in range(10):
        means, covs = motion.predict(means, covs)
    assert motion.gating_distance(means, covs, np.array([[105.0, 50.0]]))[0, 0] < 25 / 5


def test_batched_kalman_update_is_the_textbook_update_of_each_track():
    rng = np.random.default_rng(0)
    h = np.eye(4, 8)
    means, covs = [], []
    for k in range(5):  # states after a few random updates: covariances that are not diagonal
        m, c = motion.initiate(np.array([100.0 + 30 * k, 50.0, 20.0 + k, 40.0]))
        for _ in range(3):
            pm, pc = motion.predict(m[None], c[None])
            um, uc = motion.update(pm, pc, pm[:, :4] + rng.normal(0, 2, (1, 4)))
            m, c = um[0], uc[0]
        means.append(m)
        covs.append(c)
    means, covs = np.stack(means), np.stack(covs)
    z = means[:, :4] + rng.normal(0, 3, (5, 4))
    got_m, got_c = motion.update(means, covs, z)
    for k in range(5):
        w, ht = means[k, 2], means[k, 3]
        r = np.diag([(w / 20) ** 2, (ht / 20) ** 2, (w / 20) ** 2, (ht / 20) ** 2])
        s = h @ covs[k] @ h.T + r
        gain = covs[k] @ h.T @ np.linalg.inv(s)
        np.testing.assert_allclose(got_m[k], means[k] + gain @ (z[k] - h @ means[k]), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(got_c[k], (np.eye(8) - gain @ h) @ covs[k], rtol=1e-7, atol=1e-9)


def test_cosine_distance_is_one_minus_the_dot_product():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(7, 16)), rng.normal(size=(3, 16))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    d = matching.cosine_distance(a, b)
    assert d.shape == (7, 3) and d.dtype == np.float32
    np.testing.assert_allclose(d, 1.0 - a @ b.T, atol=1e-6)
    assert matching.cosine_distance(a[:0], b).shape == (0, 3)
