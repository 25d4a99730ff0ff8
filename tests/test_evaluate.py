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


# --- paired gains over the human-only baseline ---
from scipy.special import expit
from llm_augment.evaluate import (paired_gain, gain_table, paired_gains, SeedRun, seed_gain_draws, check_runs,
                                  simultaneous_level, holm)


@lru_cache
def tfidf_pair(path, n_base=60):
    "Labels, and P(label=1) of TF-IDF models trained on `n_base` rows and on a third of a real dataset."
    rows = pd.read_csv(path, keep_default_na=False)
    train, test = train_test_split(rows, train_size=1/3, stratify=rows.label, random_state=0)
    def probs(fit_rows):
        vectoriser = TfidfVectorizer(min_df=2).fit(fit_rows.text)
        model = LogisticRegression(max_iter=1000).fit(vectoriser.transform(fit_rows.text), fit_rows.label)
        return model.predict_proba(vectoriser.transform(test.text))[:, 1]
    return test.label.to_numpy(), probs(train), probs(train.sample(n_base, random_state=0))


@pytest.fixture
def mohler_pair(shared): return tfidf_pair(shared('mohler_asag'))


def simulated(n, rng, noise_scales):
    "Labels from a logistic model and one probability vector per noise scale (the same scale = the same AUC)."
    signal = rng.normal(size=n)
    y = (rng.random(n) < expit(2 * signal)).astype(int)
    return y, [expit(signal + scale * rng.normal(size=n)) for scale in noise_scales]


@pytest.mark.parametrize('metric', ['auc', 'kappa'])
def test_paired_gain_equals_slow_loop(mohler_pair, metric):
    y, arm, base = mohler_pair
    sk = dict(auc=lambda y, p: roc_auc_score(y, p), kappa=lambda y, p: cohen_kappa_score(y, (p >= 0.5).astype(int)))[metric]
    reference = np.array([sk(y[i], arm[i]) - sk(y[i], base[i]) for i in bootstrap_indices(len(y), 200, seed=7)])
    result = paired_gain(y, arm, base, n_boot=200, seed=7, metric=metric)
    np.testing.assert_allclose(result.draws, reference, rtol=0, atol=1e-12)
    np.testing.assert_allclose([result.lo, result.hi], np.percentile(reference, [2.5, 97.5]), rtol=0, atol=1e-12)
    assert result.gain == pytest.approx(sk(y, arm) - sk(y, base), abs=1e-12) and result.skipped == 0


def test_two_level_draws_equal_slow_loop(mohler_pair):
    "Each draw: resample seeds, then each drawn slot's own rows; the k-th slot picking seed s uses its k-th resample."
    y, arm, base = mohler_pair
    cut = [slice(0, 500), slice(500, 1000), slice(1000, None)]  # three seeds with test sets of different sizes
    runs = check_runs([SeedRun(y[c], base[c], {'arm': arm[c]}) for c in cut])
    n_boot, seed = 40, 3
    drawn = np.random.default_rng([seed, 3]).integers(0, 3, (n_boot, 3))
    rows = {s: bootstrap_indices(len(runs[s].y_true), (drawn == s).sum(), seed + s) for s in range(3)}
    used, reference = {s: 0 for s in range(3)}, []
    for picked in drawn:
        gains = []
        for s in picked:
            r, i = runs[s], rows[s][used[s]]; used[s] += 1
            gains.append(roc_auc_score(r.y_true[i], r.arm_probs['arm'][i]) - roc_auc_score(r.y_true[i], r.prob_base[i]))
        reference.append(np.mean(gains))
    np.testing.assert_allclose(seed_gain_draws(runs, n_boot, seed)[:, 0], reference, rtol=0, atol=1e-12)


def test_one_seed_is_the_paired_bootstrap(mohler_pair):
    y, arm, base = mohler_pair
    single, row = paired_gain(y, arm, base, n_boot=300, seed=4), gain_table(y, {'arm': arm}, base, n_boot=300, seed=4).iloc[0]
    assert [row.gain, row.lo, row.hi] == pytest.approx([single.gain, single.lo, single.hi], abs=1e-12)
    assert [row.lo_adj, row.hi_adj] == [row.lo, row.hi]  # one arm: nothing to adjust
    assert row.noise == 'test rows' and row.n_seeds == 1 and row.n_test == len(y)


def test_simultaneous_intervals_contain_marginal_and_hold_joint_level(mohler_pair):
    y, arm, base = mohler_pair
    rng = np.random.default_rng(0)
    arms = {f'noisy {s}': expit(np.log(arm / (1 - arm)) + s * rng.normal(size=len(y))) for s in (0.5, 1.0, 1.5, 2.0)}
    table = gain_table(y, arms, base, n_boot=500, seed=1)
    assert (table.lo_adj <= table.lo).all() and (table.hi <= table.hi_adj).all()
    assert ((table.lo_adj < table.lo) & (table.hi < table.hi_adj)).all()  # four correlated but distinct arms: wider
    draws = np.stack([paired_gain(y, p, base, n_boot=500, seed=1).draws for p in arms.values()], 1)
    inside = lambda lo, hi: ((draws >= lo.to_numpy()) & (draws <= hi.to_numpy())).all(1).mean()
    assert inside(table.lo_adj, table.hi_adj) >= 0.95
    assert inside(table.lo, table.hi) < 0.93  # the marginal intervals together hold fewer of the joint draws


def test_arm_identical_to_baseline_gains_nothing(mohler_pair):
    y, arm, base = mohler_pair
    table = gain_table(y, {'copy of baseline': base.copy(), 'arm': arm}, base, n_boot=300).set_index('arm')
    copy = table.loc['copy of baseline']
    assert [copy.gain, copy.lo, copy.hi, copy.lo_adj, copy.hi_adj] == [0, 0, 0, 0, 0]
    assert copy.p == 1 and copy.p_adj == 1


def test_clearly_better_arm_is_above_zero_after_adjustment():
    y, (truth, null_a, null_b) = simulated(400, np.random.default_rng(0), [0.0, 3.0, 3.0])
    noise = np.random.default_rng(1).random(400)
    table = gain_table(y, {'truth': truth, 'null a': null_a, 'null b': null_b}, noise, n_boot=500).set_index('arm')
    assert table.loc['truth', 'lo_adj'] > 0.1
    assert table.loc['truth', 'p_adj'] == pytest.approx(3 * 2 / 501)  # no draw at or below 0: the smallest p, times 3


def test_null_arms_adjusted_coverage():
    "Three arms with the baseline's AUC in the population: all three adjusted intervals hold 0 in >= 90% of 200 tests."
    rng, covered, marginal = np.random.default_rng(0), [], []
    for _ in range(200):
        y, (base, *arms) = simulated(300, rng, [1.0] * 4)
        table = gain_table(y, dict(zip('abc', arms)), base, n_boot=200, seed=int(rng.integers(1 << 30)))
        covered.append(((table.lo_adj <= 0) & (0 <= table.hi_adj)).all())
        marginal.append(((table.lo <= 0) & (0 <= table.hi)).all())
    assert np.mean(covered) >= 0.9
    assert np.mean(marginal) < np.mean(covered) - 0.03  # the adjustment is what buys the joint coverage


def test_seed_noise_is_covered_across_seeds():
    "Each seed's arm is better or worse than its baseline at random (mean gain 0): the two-level interval covers 0."
    rng, two_level, one_seed = np.random.default_rng(0), [], []
    for _ in range(60):
        runs = []
        for _ in range(8):
            scales = [0.3, 1.5] if rng.random() < 0.5 else [1.5, 0.3]
            y, (arm, base) = simulated(int(rng.integers(150, 250)), rng, scales)
            runs.append(SeedRun(y, base, {'arm': arm}))
        row = paired_gains(runs, n_boot=200, seed=int(rng.integers(1 << 30))).iloc[0]
        assert row.noise == 'test rows + training seeds' and row.n_seeds == 8
        two_level.append(row.lo <= 0 <= row.hi)
        single = paired_gain(runs[0].y_true, runs[0].arm_probs['arm'], runs[0].prob_base, n_boot=200)
        one_seed.append(single.lo <= 0 <= single.hi)
    assert np.mean(two_level) >= 0.85
    assert np.mean(one_seed) < 0.5  # test rows alone do not cover the training-seed noise


def test_shared_test_rows_do_not_average_out(mohler_pair):
    y, arm, base = mohler_pair
    run, single = SeedRun(y, base, {'arm': arm}), paired_gain(y, arm, base, n_boot=300, seed=2)
    shared = paired_gains([run] * 4, n_boot=300, seed=2, shared_test=True).iloc[0]
    assert [shared.lo, shared.hi] == pytest.approx([single.lo, single.hi], abs=1e-12)  # 4 copies of one run = 1 run
    separate = paired_gains([run] * 4, n_boot=300, seed=2).iloc[0]
    assert separate.hi - separate.lo < 0.7 * (single.hi - single.lo)  # independent rows per seed would average out


def test_primary_arm_is_unadjusted(mohler_pair):
    y, arm, base = mohler_pair
    arms = {'a': arm, 'b': (arm + base) / 2}
    plain, chosen = gain_table(y, arms, base, n_boot=300), gain_table(y, arms, base, n_boot=300, primary='b')
    assert chosen.primary.tolist() == [False, True]
    assert chosen.iloc[1][['lo_adj', 'hi_adj', 'p_adj']].tolist() == chosen.iloc[1][['lo', 'hi', 'p']].tolist()
    assert chosen.iloc[1].lo_adj > plain.iloc[1].lo_adj
    assert chosen.iloc[0].drop('primary').equals(plain.iloc[0].drop('primary'))


def test_holm_and_simultaneous_level():
    np.testing.assert_allclose(holm(np.array([0.01, 0.04, 0.03, 0.005])), [0.03, 0.06, 0.06, 0.02], atol=1e-12)
    normal = np.random.default_rng(0).normal(size=(4000, 2))
    assert simultaneous_level(normal[:, :1]) == 0.95
    assert abs(simultaneous_level(normal) - 0.95 ** 0.5) < 0.005


@pytest.mark.parametrize('call, message', [
    (lambda y, a, b: paired_gains([]), 'runs is empty'),
    (lambda y, a, b: gain_table(y, {}, b), 'at least one augmented arm'),
    (lambda y, a, b: paired_gains([SeedRun(y, b, {'a': a}), SeedRun(y, b, {'c': a})]), "run 1 has arms ['c']"),
    (lambda y, a, b: gain_table(y, {'a': a}, b, primary='z'), "primary arm 'z'"),
    (lambda y, a, b: gain_table(y, {'a': a}, b, metric='roc'), "metric 'roc'"),
    (lambda y, a, b: gain_table(y, {'a': a[:-1]}, b), 'one probability per test row'),
    (lambda y, a, b: paired_gains([SeedRun(y, b, {'a': a}), SeedRun(y[:-1], b[:-1], {'a': a[:-1]})], shared_test=True),
     'shared_test=False'),
])
def test_gain_errors_name_the_fix(mohler_pair, call, message):
    with pytest.raises(DataError) as raised: call(*mohler_pair)
    assert message in str(raised.value)


def test_each_arm_is_paired_with_its_own_baseline():
    from llm_augment.evaluate import SeedRun, paired_gain, paired_gains
    rng = np.random.default_rng(0); y = rng.integers(0, 2, 300)
    good, noise, mid = y*0.6 + rng.random(300)*0.4, rng.random(300), y*0.3 + rng.random(300)*0.7
    table = paired_gains([SeedRun(y, {'a': noise, 'b': mid}, {'a': good, 'b': good})], n_boot=300).set_index('arm')
    for arm, base in (('a', noise), ('b', mid)):
        alone = paired_gain(y, good, base, n_boot=300)
        assert abs(table.loc[arm, 'gain'] - alone.gain) < 1e-12 and abs(table.loc[arm, 'lo'] - alone.lo) < 1e-12
    assert table.loc['a', 'gain'] > table.loc['b', 'gain'] > 0
