"evaluate: point estimates against scikit-learn, vectorised bootstrap against the per-resample loop, errors."
from functools import lru_cache

import numpy as np, pandas as pd, pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (roc_auc_score, f1_score, accuracy_score, precision_score, recall_score,
                             cohen_kappa_score)
from sklearn.model_selection import train_test_split

from llm_augment.data import DataError
from llm_augment.evaluate import (METRICS, score, bootstrap_indices, bootstrap_metrics, naive_bootstrap,
                                  weighted_auc, multiplicities, summarise_seeds, beats)


@lru_cache
def tfidf_predictions(path):
    "Labels and P(label=1) of a TF-IDF + logistic regression trained on a third of a real dataset, on the rest."
    rows = pd.read_csv(path, keep_default_na=False)
    train, test = train_test_split(rows, train_size=1/3, stratify=rows.label, random_state=0)
    vectoriser = TfidfVectorizer(min_df=2).fit(train.text)
    model = LogisticRegression(max_iter=1000).fit(vectoriser.transform(train.text), train.label)
    return test.label.to_numpy(), model.predict_proba(vectoriser.transform(test.text))[:, 1]


@pytest.fixture
def mohler(shared): return tfidf_predictions(shared('mohler_asag'))


def sklearn_metrics(y_true, y_prob, threshold=0.5):
    y_pred = (y_prob >= threshold).astype(int)
    return dict(auc=roc_auc_score(y_true, y_prob), f1=f1_score(y_true, y_pred), accuracy=accuracy_score(y_true, y_pred),
                precision=precision_score(y_true, y_pred), recall=recall_score(y_true, y_pred),
                kappa=cohen_kappa_score(y_true, y_pred))


def paper_loop(y_true, y_prob, n_boot, seed, level=0.95, threshold=0.5):
    "The per-resample scikit-learn loop written out here, independent of the module: (lo, hi) per metric."
    values = [sklearn_metrics(y_true[i], y_prob[i], threshold) for i in bootstrap_indices(len(y_true), n_boot, seed)
              if len(np.unique(y_true[i])) == 2]
    return pd.DataFrame(values)[METRICS].quantile([(1 - level) / 2, (1 + level) / 2]).to_numpy()


@pytest.mark.parametrize('threshold', [0.5, 0.7])
def test_point_estimates_equal_sklearn(mohler, threshold):
    y_true, y_prob = mohler
    table = score(y_true, y_prob, n_boot=10, threshold=threshold).set_index('metric').value
    expected = sklearn_metrics(y_true, y_prob, threshold)
    assert table.to_dict() == expected  # exact, not approximately


def test_ci_within_naive_loop(mohler):
    y_true, y_prob = mohler
    table = score(y_true, y_prob, n_boot=300, seed=5)
    bounds = paper_loop(y_true, y_prob, n_boot=300, seed=5)
    assert np.abs(table[['lo', 'hi']].to_numpy().T - bounds).max() < 0.005
    assert (table.lo < table.value).all() and (table.value < table.hi).all()


def test_resamples_match_loop_one_by_one(mohler):
    y_true, y_prob = mohler
    fast, slow = bootstrap_metrics(y_true, y_prob, n_boot=100, seed=2), naive_bootstrap(y_true, y_prob, n_boot=100, seed=2)
    np.testing.assert_allclose(fast.to_numpy(), slow.to_numpy(), rtol=0, atol=1e-12)


def test_auc_with_ties(mohler):
    "Rounded probabilities are mostly tied; ties must count one half, as in roc_auc_score."
    y_true, y_prob = mohler
    coarse = y_prob.round(1)
    indices = bootstrap_indices(len(y_true), 20, seed=1)
    expected = [roc_auc_score(y_true[i], coarse[i]) for i in indices]
    np.testing.assert_allclose(weighted_auc(multiplicities(indices, len(y_true)), y_true, coarse), expected, atol=1e-12)


def test_one_class_resamples_are_skipped_and_counted():
    y_true, y_prob = np.array([1] * 9 + [0]), np.linspace(0.05, 0.95, 10)
    one_class = sum(len(np.unique(y_true[i])) == 1 for i in bootstrap_indices(10, 500, seed=0))
    assert 100 < one_class < 300  # (9/10)**10 = 0.35 of 500 resamples miss the only negative
    table = score(y_true, y_prob, n_boot=500, seed=0)
    assert table.attrs['skipped'] == one_class
    assert len(bootstrap_metrics(y_true, y_prob, n_boot=500, seed=0)) == 500 - one_class
    assert naive_bootstrap(y_true, y_prob, n_boot=500, seed=0).attrs['skipped'] == one_class
    assert table[['lo', 'hi']].notna().all().all()


def test_seed_reproducibility(mohler):
    y_true, y_prob = mohler
    pd.testing.assert_frame_equal(score(y_true, y_prob, n_boot=200, seed=3), score(y_true, y_prob, n_boot=200, seed=3))
    assert not score(y_true, y_prob, n_boot=200, seed=3).equals(score(y_true, y_prob, n_boot=200, seed=4))


def test_inputs_as_lists_and_series(mohler):
    y_true, y_prob = mohler
    pd.testing.assert_frame_equal(score(list(y_true), pd.Series(y_prob), n_boot=50), score(y_true, y_prob, n_boot=50))


def test_level_and_no_resamples(mohler):
    y_true, y_prob = mohler
    wide, narrow = score(y_true, y_prob, n_boot=200), score(y_true, y_prob, n_boot=200, level=0.5)
    assert ((narrow.hi - narrow.lo) < (wide.hi - wide.lo)).all()
    none = score(y_true, y_prob, n_boot=0)
    assert none.lo.isna().all() and none.hi.isna().all() and none.attrs['skipped'] == 0


@pytest.mark.parametrize('y_true, y_prob, message', [
    ([0, 1, 1], [0.2, 0.8], 'y_true has 3 labels but y_prob has 2'),
    ([0, 1, 1], [0.2, np.nan, 0.7], 'first at row 1'),
    ([1, 1, 1], [0.2, 0.4, 0.7], 'only label [1]'),
    ([0, 1, 2], [0.2, 0.4, 0.7], 'binarise'),
])
def test_errors_name_the_problem(y_true, y_prob, message):
    with pytest.raises(DataError) as raised: score(y_true, y_prob)
    assert message in str(raised.value) and isinstance(raised.value, ValueError)


def test_summarise_seeds():
    runs = pd.DataFrame(dict(n_synthetic=[0, 0, 0, 250, 250], seed=[0, 1, 2, 0, 1],
                             auc=[0.70, 0.72, 0.74, 0.80, 0.78], f1=[0.5, 0.6, 0.7, 0.8, 0.9]))
    summary = summarise_seeds(runs, 'n_synthetic', metrics=('auc', 'f1')).set_index(['n_synthetic', 'metric'])
    assert summary.loc[(0, 'auc')].tolist() == pytest.approx([0.72, 0.02, 0.70, 0.74, 3])
    assert summary.loc[(250, 'f1')].tolist() == pytest.approx([0.85, np.std([0.8, 0.9], ddof=1), 0.8, 0.9, 2])
    with pytest.raises(DataError, match="no column 'kappa'"): summarise_seeds(runs, 'n_synthetic', metrics=('kappa',))


def test_beats():
    assert beats([0.80, 0.81, 0.79], [0.70, 0.71, 0.69])
    assert not beats([0.70, 0.71, 0.69], [0.80, 0.81, 0.79])
    assert not beats([0.72, 0.80, 0.64], [0.70, 0.78, 0.62])  # 0.02 apart, seed spread 0.08
    with pytest.raises(DataError, match='at least 2 seeds'): beats([0.8], [0.7, 0.71])
