//! The test that decides whether a change of a function's sample count is more than sampling
//! noise: a two-sided binomial test of one count given the sum of both (the conditional test
//! for two Poisson counts). The formula and its false-positive rate are in `docs/diff.md`.
//!
//! Under the null hypothesis (the function's cost did not change), the function's samples in
//! BASE and NEW are independent Poisson counts `k_base ~ Poisson(λ·e_base)` and
//! `k_new ~ Poisson(λ·e_new)`, where `e` is each profile's exposure. Given their sum
//! `n = k_base + k_new`, `k_new` is then `Binomial(n, p)` with `p = e_new / (e_base + e_new)`,
//! whatever `λ` is. The p-value is twice the smaller tail at `k_new`, capped at 1, so a
//! function whose cost did not change is called significant with probability at most `alpha`.

/// The significance level rprof uses: a function that did not change is marked significant in
/// at most 1 of 1,000 comparisons.
pub const ALPHA: f64 = 0.001;

/// ln Γ(x) for x > 0: Lanczos' approximation (g = 7, 9 coefficients), about 15 correct digits.
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = COEFFICIENTS[0];
    for (i, c) in COEFFICIENTS.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

/// ln P(X = k) for X ~ Binomial(n, p), 0 < p < 1.
fn ln_pmf(k: u64, n: u64, p: f64) -> f64 {
    let (k, n) = (k as f64, n as f64);
    ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0)
        + k * p.ln()
        + (n - k) * (-p).ln_1p()
}

/// The two-sided p-value of `k` successes in `n` trials of probability `p`: twice the tail at
/// `k` on its side of the mean, at most 1. `n == 0`, or `p` outside (0, 1), gives 1 (nothing
/// to tell apart).
pub fn binomial_two_sided(k: u64, n: u64, p: f64) -> f64 {
    if n == 0 || k > n || p.is_nan() || p <= 0.0 || p >= 1.0 {
        return 1.0;
    }
    let below = (k as f64) <= n as f64 * p;
    // Away from the mean the terms only get smaller (the ratio of neighbours is below 1 there),
    // so the sum stops once a term no longer adds to it.
    let mut term = ln_pmf(k, n, p).exp();
    let mut tail = 0.0;
    let mut i = k;
    let odds = p / (1.0 - p);
    loop {
        tail += term;
        if term <= tail * 1e-17 || term == 0.0 {
            break;
        }
        if below {
            if i == 0 {
                break;
            }
            // P(i − 1) = P(i) · i / (n − i + 1) · (1 − p) / p
            term *= i as f64 / (n - i + 1) as f64 / odds;
            i -= 1;
        } else {
            if i == n {
                break;
            }
            // P(i + 1) = P(i) · (n − i) / (i + 1) · p / (1 − p)
            term *= (n - i) as f64 / (i + 1) as f64 * odds;
            i += 1;
        }
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, relative: f64) -> bool {
        (a - b).abs() <= relative * b.abs().max(f64::MIN_POSITIVE)
    }

    #[test]
    fn ln_gamma_matches_factorials() {
        let mut factorial = 1.0f64;
        for n in 1..30u32 {
            factorial *= f64::from(n);
            assert!(
                close(ln_gamma(f64::from(n) + 1.0), factorial.ln(), 1e-12),
                "{n}"
            );
        }
        assert!(close(
            ln_gamma(0.5),
            std::f64::consts::PI.sqrt().ln(),
            1e-12
        ));
    }

    /// Exact values: for n = 10, p = 1/2, P(X ≤ 1) = 11/1024, so k = 1 has p-value 22/1024;
    /// P(X ≥ 8) = 56/1024.
    #[test]
    fn small_cases_are_exact() {
        assert!(close(binomial_two_sided(1, 10, 0.5), 22.0 / 1024.0, 1e-12));
        assert!(close(binomial_two_sided(9, 10, 0.5), 22.0 / 1024.0, 1e-12));
        assert!(close(binomial_two_sided(8, 10, 0.5), 112.0 / 1024.0, 1e-12));
        assert_eq!(binomial_two_sided(5, 10, 0.5), 1.0);
        assert!(close(binomial_two_sided(0, 4, 0.5), 2.0 / 16.0, 1e-12));
        // P(X = 0) for n = 3, p = 0.9: 0.001, doubled.
        assert!(close(binomial_two_sided(0, 3, 0.9), 0.002, 1e-9));
    }

    #[test]
    fn degenerate_inputs_are_not_significant() {
        assert_eq!(binomial_two_sided(0, 0, 0.5), 1.0);
        assert_eq!(binomial_two_sided(3, 5, 0.0), 1.0);
        assert_eq!(binomial_two_sided(3, 5, 1.0), 1.0);
        assert_eq!(binomial_two_sided(3, 5, f64::NAN), 1.0);
        assert_eq!(binomial_two_sided(6, 5, 0.5), 1.0);
    }

    /// The designed regression of `fixtures/regress.c`: 500 samples doubled to 1,000 is far
    /// beyond noise; 300 against 310 is not; the sum is cheap even for millions of samples.
    #[test]
    fn large_counts() {
        assert!(binomial_two_sided(1000, 1500, 0.5) < 1e-20);
        assert!(binomial_two_sided(310, 610, 0.5) > 0.5);
        let p = binomial_two_sided(5_000_500, 10_000_000, 0.5);
        assert!(p > 0.7 && p < 0.8, "{p}");
        assert!(binomial_two_sided(5_020_000, 10_000_000, 0.5) < ALPHA);
    }

    /// The false-positive rate: over every outcome of Binomial(n, p), the probability of a
    /// p-value at or below ALPHA is at most ALPHA.
    #[test]
    fn false_positive_rate_is_at_most_alpha() {
        for (n, p) in [(40u64, 0.5), (200, 0.5), (1000, 0.3), (3000, 0.62)] {
            let rate: f64 = (0..=n)
                .filter(|&k| binomial_two_sided(k, n, p) <= ALPHA)
                .map(|k| ln_pmf(k, n, p).exp())
                .sum();
            assert!(rate <= ALPHA, "n {n} p {p}: {rate}");
            assert!(
                rate > ALPHA / 10.0,
                "n {n} p {p}: the test is not that strict: {rate}"
            );
        }
    }
}
