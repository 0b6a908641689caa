//! A tiny seeded PRNG (xorshift64*, seeded through splitmix64) and the Monte Carlo
//! count the executors compute: how many of `samples` random points of the unit
//! square fall inside the quarter circle. Same seed, same count, on any machine.

/// xorshift64* (Vigna), enough for Monte Carlo; not for cryptography.
#[derive(Debug, Clone)]
pub struct XorShift {
    state: u64,
}

impl XorShift {
    /// A generator for `seed`; every seed (0 included) gives a valid, distinct stream.
    pub fn new(seed: u64) -> XorShift {
        // splitmix64 spreads nearby seeds apart and never yields the all-zero state
        // from which xorshift cannot leave (it is a bijection with 0 -> nonzero).
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        XorShift { state: if z == 0 { 0x2545_F491_4F6C_DD1D } else { z } }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A uniform float in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Of `samples` points drawn with `seed`, how many satisfy x² + y² <= 1.
pub fn count_hits(seed: u64, samples: u64) -> u64 {
    let mut rng = XorShift::new(seed);
    let mut hits = 0;
    for _ in 0..samples {
        let x = rng.next_f64();
        let y = rng.next_f64();
        if x * x + y * y <= 1.0 {
            hits += 1;
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream_and_seed_zero_works() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = XorShift::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = XorShift::new(7);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        let mut zero = XorShift::new(0);
        assert_ne!(zero.next_u64(), zero.next_u64());
        assert_ne!(XorShift::new(1).next_u64(), XorShift::new(2).next_u64());
    }

    #[test]
    fn floats_stay_in_the_unit_interval() {
        let mut rng = XorShift::new(42);
        for _ in 0..10_000 {
            let x = rng.next_f64();
            assert!((0.0..1.0).contains(&x));
        }
    }

    #[test]
    fn a_million_samples_estimate_pi_to_two_decimals() {
        let samples = 1_000_000;
        let estimate = 4.0 * count_hits(3, samples) as f64 / samples as f64;
        assert!((estimate - std::f64::consts::PI).abs() < 0.01, "estimate {estimate}");
        assert_eq!(count_hits(3, 1000), count_hits(3, 1000));
        assert_eq!(count_hits(3, 0), 0);
    }
}
