"""Tests of the interaction estimators (SII and redundancy gap over cross-modal pairs)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fli2moe.interactions import cross_pairs, exact, montecarlo

# Interleaved modalities so that pair bookkeeping cannot rely on contiguous blocks.
MODALITY = torch.tensor([0, 1, 1, 0, 0, 1])
N = len(MODALITY)
SCHEMES = ["outside", "owen"]


pytestmark = pytest.mark.usefixtures("one_thread")


def bitmask(coalitions: torch.Tensor) -> torch.Tensor:
    return (coalitions.long() << torch.arange(coalitions.shape[1])).sum(dim=1)


def table_game(n: int, seed: int):
    """v(S) = an independent N(0, 1) value per coalition: no structure an estimator could exploit."""
    table = torch.randn(2**n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return lambda coalitions: table[bitmask(coalitions)], table


def brute_force(table: torch.Tensor, n: int, i: int, j: int, rg_keep: float) -> tuple[float, float]:
    """SII and RG of (i, j) by a double loop over context sizes and subsets with factorial weights."""
    others = [p for p in range(n) if p not in (i, j)]

    def v(players) -> float:
        return float(table[sum(1 << p for p in players)])

    sii = rg = 0.0
    for size in range(n - 1):
        for context in itertools.combinations(others, size):
            d = v(context + (i, j)) - v(context + (i,)) - v(context + (j,)) + v(context)
            sii += math.factorial(size) * math.factorial(n - size - 2) / math.factorial(n - 1) * d
            rg -= rg_keep**size * (1 - rg_keep) ** (n - 2 - size) * d
    return sii, rg


class Recorder:
    """Wraps a game and records every batch it is called with."""

    def __init__(self, game):
        self.game = game
        self.batches: list[torch.Tensor] = []

    def __call__(self, coalitions: torch.Tensor) -> torch.Tensor:
        self.batches.append(coalitions.clone())
        return self.game(coalitions)


# --- closed forms -------------------------------------------------------------------------------

I, J = 1, 3  # a cross-modal pair of MODALITY
WEIGHTS = torch.tensor([0.3, -1.2, 2.0, 0.7, -0.4, 1.1], dtype=torch.float64)
CLOSED_FORMS = {
    # name: (game, SII(I, J), RG(I, J)); every other pair involves a dummy player: 0 and 0.
    "and": (lambda c: (c[:, I] & c[:, J]).double(), 1.0, -1.0),
    "or": (lambda c: (c[:, I] | c[:, J]).double(), -1.0, 1.0),
    "additive": (lambda c: c.double() @ WEIGHTS, 0.0, 0.0),
}


def expected_closed_form(sii_ij: float, rg_ij: float):
    pairs = cross_pairs(MODALITY)
    is_ij = (pairs[:, 0] == I) & (pairs[:, 1] == J)
    assert is_ij.sum() == 1
    return is_ij.double() * sii_ij, is_ij.double() * rg_ij


@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_exact_closed_forms(name):
    game, sii_ij, rg_ij = CLOSED_FORMS[name]
    want_sii, want_rg = expected_closed_form(sii_ij, rg_ij)
    for rg_keep in (1.0, 0.7):
        result = exact(game, MODALITY, rg_keep=rg_keep)
        torch.testing.assert_close(result.sii, want_sii, atol=1e-12, rtol=0)
        torch.testing.assert_close(result.rg, want_rg, atol=1e-12, rtol=0)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("name", CLOSED_FORMS)
def test_montecarlo_closed_forms(name, scheme):
    # D_ij(S) does not depend on S in these games, so every sample is exact and so is the estimate.
    game, sii_ij, rg_ij = CLOSED_FORMS[name]
    want_sii, want_rg = expected_closed_form(sii_ij, rg_ij)
    result = montecarlo(game, MODALITY, num_contexts=200, seed=0, rg_keep=0.7, scheme=scheme)
    torch.testing.assert_close(result.sii, want_sii, atol=1e-12, rtol=0)
    torch.testing.assert_close(result.rg, want_rg, atol=1e-12, rtol=0)
    torch.testing.assert_close(result.sii_se, torch.zeros_like(want_sii), atol=1e-12, rtol=0)


# --- exact against independent references --------------------------------------------------------


@pytest.mark.parametrize("modality", [MODALITY, torch.tensor([0, 1, 2, 0, 1])], ids=["2mod", "3mod"])
@pytest.mark.parametrize("rg_keep", [1.0, 0.7, 0.0])
def test_exact_matches_brute_force(modality, rg_keep):
    n = len(modality)
    game, table = table_game(n, seed=1)
    result = exact(game, modality, rg_keep=rg_keep)
    want = torch.tensor([brute_force(table, n, int(i), int(j), rg_keep) for i, j in result.pairs], dtype=torch.float64)
    assert len(result.pairs) == sum(int(modality[i] != modality[j]) for i, j in itertools.combinations(range(n), 2))
    torch.testing.assert_close(result.sii, want[:, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(result.rg, want[:, 1], atol=1e-12, rtol=0)
    assert torch.all(result.sii_se == 0) and torch.all(result.rg_se == 0)
    assert torch.all(result.sii_samples == 2 ** (n - 2))
    assert torch.all(result.rg_samples == (2 ** (n - 2) if 0 < rg_keep < 1 else 1))


def test_exact_matches_shapiq():
    from shapiq import ExactComputer

    n = 8
    modality = torch.tensor([0, 0, 1, 0, 1, 1, 0, 1])
    game, table = table_game(n, seed=2)
    table_np = table.numpy()

    def numpy_game(coalitions: np.ndarray) -> np.ndarray:
        coalitions = np.atleast_2d(coalitions).astype(np.int64)
        return table_np[(coalitions << np.arange(n)).sum(axis=1)]

    reference = ExactComputer(numpy_game, n_players=n)("SII", order=2)
    result = exact(game, modality)
    want = torch.tensor([reference[(int(i), int(j))] for i, j in result.pairs], dtype=torch.float64)
    torch.testing.assert_close(result.sii, want, atol=1e-10, rtol=0)


def test_exact_rejects_more_than_16_players():
    recorder = Recorder(lambda c: torch.zeros(len(c)))
    with pytest.raises(ValueError, match="n <= 16"):
        exact(recorder, torch.tensor([0, 1] * 9))
    assert recorder.batches == []


def test_exact_goes_beyond_16_players_when_allowed():
    # An AND game of players 0 and 1 (modalities 0 and 1) among 18: SII = 1 for that pair, 0 elsewhere.
    modality = torch.tensor([0, 1] * 9)
    result = exact(lambda c: (c[:, 0] & c[:, 1]).double(), modality, max_players=18)
    first = (result.pairs[:, 0] == 0) & (result.pairs[:, 1] == 1)
    assert result.evaluations == 2**18 and result.sii[first].item() == pytest.approx(1.0)
    torch.testing.assert_close(result.sii[~first], torch.zeros(int((~first).sum()), dtype=torch.float64))


# --- montecarlo against exact --------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("rg_keep", [1.0, 0.7])
@pytest.mark.parametrize("game_seed", [3, 4])
def test_montecarlo_within_4_se_of_exact(scheme, rg_keep, game_seed):
    # 108 z-scores across the parametrisations: at 3 SE a correct estimator would fail one of them
    # with probability ~1 - 0.9973^108 = 25%. 4 SE is the Bonferroni bound for a 1% familywise
    # error (z_{0.01 / 108 / 2} = 3.9); bias at the 1-SE scale is caught by the coverage test.
    game, _ = table_game(N, seed=game_seed)
    truth = exact(game, MODALITY, rg_keep=rg_keep)
    result = montecarlo(game, MODALITY, num_contexts=400, seed=game_seed, rg_keep=rg_keep, scheme=scheme)
    torch.testing.assert_close(result.pairs, truth.pairs)
    for estimate, se, want in [(result.sii, result.sii_se, truth.sii), (result.rg, result.rg_se, truth.rg)]:
        assert torch.all(torch.isfinite(se))
        deterministic = se == 0
        # With SE 0 (RG at rg_keep = 1) the estimate is exact, up to float rounding.
        torch.testing.assert_close(estimate[deterministic], want[deterministic], atol=1e-12, rtol=0)
        assert torch.all((estimate - want)[~deterministic].abs() <= 4 * se[~deterministic])
    assert (rg_keep == 1.0) == bool(torch.all(result.rg_se == 0))


def size_game(seed: int):
    """v(S) = h(|S|) with a rough random h: D_ij(S) depends on |S| only, so a wrong size
    distribution of the served contexts biases SII."""
    h = torch.randn(N + 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 10
    return lambda coalitions: h[coalitions.sum(dim=1)]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("make_game", [size_game, lambda seed: table_game(N, seed)[0]], ids=["size", "table"])
def test_montecarlo_is_unbiased_with_few_contexts(scheme, make_game):
    # Unbiasedness must hold for any number of contexts, stratum boundaries included: average 1000
    # independent 4-context estimates ("outside": over the runs where the pair was served) and
    # compare with exact using the spread of the runs, not the estimator's own SE.
    game = make_game(5)
    truth = exact(game, MODALITY, rg_keep=0.7)
    runs = [montecarlo(game, MODALITY, num_contexts=4, seed=seed, rg_keep=0.7, scheme=scheme) for seed in range(1000)]
    for field in ("sii", "rg"):
        estimates = torch.stack([getattr(r, field) for r in runs])  # [runs, P]
        for p, want in enumerate(getattr(truth, field)):
            x = estimates[:, p][torch.isfinite(estimates[:, p])]
            assert len(x) > 100
            assert (x.mean() - want).abs() <= 4 * x.std() / len(x) ** 0.5, (field, p)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_confidence_interval_coverage(scheme):
    # 95% normal intervals over 400 seeds on one fixed game, pooled over its 9 pairs, for SII and
    # for RG at rg_keep = 0.7. With an honest SE the coverage is 0.94-0.95 (a little below 0.95
    # from the t-effect of estimated SEs; the rarest case, "outside" RG served with probability
    # 0.3^2, still has ~70 samples per pair at 800 contexts). One pair's coverage fraction has sd
    # sqrt(.95 * .05 / 400) = 0.011 and pooling correlated pairs cannot increase it, so the band
    # [0.90, 0.99] lies >= 3.6 sd from the honest coverage: a correct SE fails it with probability
    # < 1e-3. An SE too small by 2 gives coverage P(|Z| < 0.98) = 0.67, one too large by 2 gives
    # P(|Z| < 3.92) = 0.9999 (a miss per 10^4 intervals where the band needs one per 100): both
    # fail with certainty.
    game, _ = table_game(N, seed=7)
    truth = exact(game, MODALITY, rg_keep=0.7)
    covered = {"sii": [], "rg": []}
    for seed in range(400):
        result = montecarlo(game, MODALITY, num_contexts=800, seed=seed, rg_keep=0.7, scheme=scheme)
        covered["sii"].append((result.sii - truth.sii).abs() <= 1.96 * result.sii_se)
        covered["rg"].append((result.rg - truth.rg).abs() <= 1.96 * result.rg_se)
    for name, hits in covered.items():
        coverage = torch.stack(hits).double().mean().item()
        assert 0.90 <= coverage <= 0.99, (name, coverage)


# --- evaluations, batching, seeding, layout ------------------------------------------------------


def test_exact_evaluates_every_coalition_once_in_bounded_batches():
    game, _ = table_game(N, seed=8)
    recorder = Recorder(game)
    result = exact(recorder, MODALITY, max_batch=7)
    seen = torch.cat(recorder.batches)
    assert result.evaluations == len(seen) == 2**N
    assert len(torch.unique(bitmask(seen))) == 2**N
    assert max(len(b) for b in recorder.batches) <= 7


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("rg_keep", [1.0, 0.7])
def test_montecarlo_counts_what_it_evaluates(scheme, rg_keep):
    n = 10
    modality = torch.tensor([0, 1] * 5)
    game, _ = table_game(n, seed=9)
    recorder = Recorder(game)
    result = montecarlo(recorder, modality, num_contexts=30, seed=0, rg_keep=rg_keep, max_batch=13, scheme=scheme)
    seen = torch.cat(recorder.batches)
    assert result.evaluations == len(seen)
    assert len(torch.unique(bitmask(seen))) == len(seen), "a coalition was evaluated twice"
    assert max(len(b) for b in recorder.batches) <= 13
    # Sharing: far fewer evaluations than the 4 per (context, pair) sample of a pair-by-pair estimator.
    samples = int(result.sii_samples.sum() + result.rg_samples.sum())
    assert result.evaluations < 0.6 * 4 * samples


@pytest.mark.parametrize("scheme", SCHEMES)
def test_rg_at_full_keep_is_computed_from_the_full_input(scheme):
    n = 10
    modality = torch.tensor([0, 1] * 5)
    game, _ = table_game(n, seed=10)
    recorder = Recorder(game)
    result = montecarlo(recorder, modality, num_contexts=40, seed=1, scheme=scheme)
    # N, N minus each player and N minus each cross pair must all have been evaluated.
    full = torch.ones(n, dtype=torch.bool)
    needed = [full] + [full.clone().index_fill_(0, torch.tensor(drop), False) for drop in range(n)]
    needed += [full.clone().index_fill_(0, pair, False) for pair in result.pairs]
    assert set(bitmask(torch.stack(needed)).tolist()) <= set(bitmask(torch.cat(recorder.batches)).tolist())
    assert torch.all(result.rg_samples == 1) and torch.all(result.rg_se == 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_result_different_seed_different_result(scheme):
    game, _ = table_game(N, seed=11)
    first, again, other = (
        montecarlo(game, MODALITY, num_contexts=50, seed=seed, rg_keep=0.7, scheme=scheme) for seed in (5, 5, 6)
    )
    for field in ("sii", "sii_se", "rg", "rg_se", "sii_samples", "rg_samples"):
        assert torch.equal(getattr(first, field), getattr(again, field)), field
    assert first.evaluations == again.evaluations
    assert not torch.equal(first.sii, other.sii)
    assert not torch.equal(first.rg, other.rg)


def test_matrix_places_each_pair_at_its_players():
    result = exact(table_game(N, seed=12)[0], MODALITY)
    matrix = result.matrix("sii")
    players_0, players_1 = (MODALITY == 0).nonzero().squeeze(1), (MODALITY == 1).nonzero().squeeze(1)
    assert matrix.shape == (len(players_0), len(players_1))
    for (i, j), value in zip(result.pairs.tolist(), result.sii):
        a, b = (i, j) if MODALITY[i] == 0 else (j, i)
        assert matrix[(players_0 == a).nonzero().item(), (players_1 == b).nonzero().item()] == value
