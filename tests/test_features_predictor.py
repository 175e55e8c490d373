"""Generalization-label features and the predictor (docs/method.md) on toy and real data."""
import torch
import torch.nn.functional as F

from tmu_utils.core.training import predict
from tmu_utils.method import features as feats
from tmu_utils.method.predictor import (cross_validated_accuracy, fit_predictor, predict_easy, predict_proba,
                                        quality_report)

CPU = torch.device("cpu")


def test_df_is_zero_for_a_duplicate_of_a_bank_sample(small_problem, small_original):
    bank_x, bank_y = small_problem["retain_x"][:200], small_problem["retain_y"][:200]
    queries = torch.cat([bank_x[:5], small_problem["forget_x"][:5]])
    labels = torch.cat([bank_y[:5], small_problem["forget_y"][:5]])
    df = feats.distance_feature(small_original, queries, labels, bank_x, bank_y, k=1, device=CPU)
    assert torch.allclose(df[:5], torch.zeros(5), atol=1e-3)  # nearest neighbour is itself
    assert (df[5:] > 1e-3).all()


def test_df_is_the_mean_of_the_k_nearest_same_class_distances(small_problem, small_original):
    bank_x, bank_y = small_problem["retain_x"][:300], small_problem["retain_y"][:300]
    x, y = small_problem["forget_x"][:3], small_problem["forget_y"][:3]
    df = feats.distance_feature(small_original, x, y, bank_x, bank_y, k=3, device=CPU)
    q = feats.normalized_features(small_original, x, CPU)
    b = feats.normalized_features(small_original, bank_x, CPU)
    for i in range(3):  # from scratch, one sample at a time
        same = b[bank_y == y[i]]
        expected = (same - q[i]).norm(dim=1).sort().values[:3].mean()
        assert torch.allclose(df[i], expected, atol=1e-5)


def test_af_is_zero_at_eps_zero_and_non_negative_typically(small_problem, small_original):
    x, y = small_problem["forget_x"][:64], small_problem["forget_y"][:64]
    zero = feats.adversarial_feature(small_original, x, y, steps=3, eps=0.0, device=CPU)
    assert torch.allclose(zero, torch.zeros(64), atol=1e-5)
    af = feats.adversarial_feature(small_original, x, y, steps=5, eps=0.03, device=CPU)
    assert (af >= -1e-5).float().mean() > 0.95 and af.mean() > 0.1


def test_cf_equals_the_per_sample_cross_entropy(small_problem, small_original):
    x, y = small_problem["forget_x"][:50], small_problem["forget_y"][:50]
    cf = feats.curriculum_feature(small_original, x, y, CPU)
    expected = F.cross_entropy(predict(small_original, x, CPU), y, reduction="none")
    assert torch.allclose(cf, expected)


def test_robust_scale_clips_outliers_into_unit_interval():
    values = torch.cat([torch.linspace(0, 1, 101), torch.tensor([100.0])])
    scaled = feats.robust_scale(values)
    assert scaled.min() == 0 and scaled.max() == 1
    assert scaled[-1] == 1 and scaled[50] < 0.6  # the outlier no longer squashes the bulk
    low, high, _, _ = feats.robust_scale_stats(values)
    assert abs(low - (0.25 - 1.5 * 0.5)) < 0.02 and abs(high - (0.75 + 1.5 * 0.5)) < 0.02


def test_feature_matrix_twin_scaling_uses_twin_statistics():
    twin = {"df": torch.linspace(0, 1, 100)}
    forget = {"df": torch.linspace(0, 2, 100)}
    _, per_set = feats.feature_matrix(twin, forget, ["df"], "per_set")
    _, by_twin = feats.feature_matrix(twin, forget, ["df"], "twin")
    assert per_set.max() == 1 and per_set[50, 0] < 0.6
    assert by_twin[50, 0] == 1  # 1.01 lies above the twin's range


def _toy(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g)
    return x, x[:, 0] + 0.3 * x[:, 1] > 0.6


def test_predictor_separates_a_toy_problem():
    x, y = _toy()
    model = fit_predictor(x, y, epochs=300, lr=1e-2, seed=0)
    xt, yt = _toy(seed=1)
    assert ((predict_proba(model, xt) >= 0.5) == yt).float().mean() > 0.93
    assert cross_validated_accuracy(x, y, folds=3, epochs=300, lr=1e-2, seed=0) > 0.9


def test_rate_match_hits_the_requested_rate():
    proba = torch.rand(1000, generator=torch.Generator().manual_seed(0))
    for rate in (0.0, 0.137, 0.5, 0.9, 1.0):
        easy, t = predict_easy(proba, "rate_match", rate)
        assert easy.sum().item() == round(rate * 1000)
        if 0 < rate:
            assert proba[easy].min() >= proba[~easy].max() if (~easy).any() else True
    easy, t = predict_easy(proba, "0.5", 0.9)
    assert t == 0.5 and torch.equal(easy, proba >= 0.5)


def test_quality_report_against_known_labels():
    true = torch.tensor([1, 1, 0, 0], dtype=torch.bool)
    proba = torch.tensor([0.9, 0.4, 0.3, 0.1])
    pred = proba >= 0.5
    q = quality_report(proba, pred, true, twin_easy_rate=0.6, twin_cv_accuracy=0.8)
    assert q["accuracy"] == 0.75 and q["balanced_accuracy"] == 0.75 and q["auc"] == 1.0
    assert q["true_easy_rate"] == 0.5 and q["predicted_easy_rate"] == 0.25 and q["twin_easy_rate"] == 0.6
