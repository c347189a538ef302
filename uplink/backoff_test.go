package uplink

import (
	"math/rand/v2"
	"testing"
	"time"
)

// fleetBuckets simulates n gateways losing their session at t=0 (a
// city-wide broker restart) and counts their connection attempts per
// one-second bucket. attempts is how many attempts each gateway makes (the
// broker may still be down for the first ones).
func fleetBuckets(n, attempts int, spread time.Duration) (buckets map[int]int, last time.Duration) {
	buckets = map[int]int{}
	for i := range n {
		b := newBackoff(DefaultBackoffMin, DefaultBackoffMax, spread, rand.New(rand.NewPCG(uint64(i), 42)))
		at := b.afterLoss()
		for a := 0; ; a++ {
			buckets[int(at/time.Second)]++
			last = max(last, at)
			if a+1 == attempts {
				break
			}
			at += b.afterFailure()
		}
	}
	return buckets, last
}

func maxBucket(buckets map[int]int) (sec, count int) {
	for s, c := range buckets {
		if c > count {
			sec, count = s, c
		}
	}
	return sec, count
}

// TestFirstReconnectSpread proves that a broker restart does not bring a
// fleet back in the same second.
func TestFirstReconnectSpread(t *testing.T) {
	const fleet = 2000
	tests := []struct {
		name     string
		attempts int
		spread   time.Duration
		maxShare float64 // of the fleet's attempts in the busiest second
		wantOK   bool
	}{
		// Uniform over 30 s: ~3.3 % per second expected, 5 % allows for noise.
		{"first reconnect", 1, DefaultReconnectSpread, 0.05, true},
		{"first three attempts, broker still down", 3, DefaultReconnectSpread, 0.05, true},
		// The check must be able to fail: a 1 s window puts everyone in one
		// or two seconds.
		{"control: 1s window herds", 1, time.Second, 0.05, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buckets, last := fleetBuckets(fleet, tt.attempts, tt.spread)
			sec, busiest := maxBucket(buckets)
			total := fleet * tt.attempts
			share := float64(busiest) / float64(total)
			t.Logf("%d attempts over %d seconds; busiest second %d holds %d (%.1f%%); last at %v",
				total, len(buckets), sec, busiest, 100*share, last.Round(time.Millisecond))
			if ok := share <= tt.maxShare; ok != tt.wantOK {
				t.Errorf("busiest second holds %.1f%% of attempts; want share <= %.0f%%: %v", 100*share, 100*tt.maxShare, tt.wantOK)
			}
			if !tt.wantOK {
				return
			}
			// The spread must cover the window, not just avoid one peak.
			for s := range int(tt.spread / time.Second) {
				if buckets[s] == 0 {
					t.Errorf("no gateway reconnects in second %d of the %v window", s, tt.spread)
				}
			}
		})
	}
}

// TestBackoffAfterFailures checks the n-th delay of a failing client against
// its ceiling min(max, min·2^n) over many seeds: always inside [min,
// ceiling), using the whole range (so the ceiling really grows), and reset
// by a success.
func TestBackoffAfterFailures(t *testing.T) {
	const lo, hi, seeds, attempts = time.Second, 2 * time.Minute, 500, 12
	var sum, top [attempts + 1]time.Duration
	for seed := range uint64(seeds) {
		b := newBackoff(lo, hi, DefaultReconnectSpread, rand.New(rand.NewPCG(seed, 7)))
		for n := 1; n <= attempts; n++ {
			d := b.afterFailure()
			ceil := min(hi, lo<<n)
			if d < lo || d >= ceil {
				t.Fatalf("seed %d attempt %d: delay %v outside [%v, %v)", seed, n, d, lo, ceil)
			}
			sum[n] += d
			top[n] = max(top[n], d)
		}
		b.reset()
		if d := b.afterFailure(); d >= 2*lo {
			t.Errorf("seed %d: after reset the first delay is %v, want below %v", seed, d, 2*lo)
		}
		if d := b.afterLoss(); d < 0 || d >= DefaultReconnectSpread {
			t.Errorf("seed %d: first reconnect delay %v outside [0, %v)", seed, d, DefaultReconnectSpread)
		}
	}
	for n := 1; n <= attempts; n++ {
		ceil := min(hi, lo<<n)
		mean, wantMean := sum[n]/seeds, (lo+ceil)/2
		if top[n] < ceil*9/10 || mean < wantMean*85/100 || mean > wantMean*115/100 {
			t.Errorf("attempt %d: max %v, mean %v; want max near %v and mean near %v", n, top[n], mean, ceil, wantMean)
		}
	}
}

// TestJitterDiffersPerProcess guards the default random source: gateways
// booted together must not share a seed.
func TestJitterDiffersPerProcess(t *testing.T) {
	var a, b Config = validConfig(), validConfig()
	if err := a.fill(); err != nil {
		t.Fatal(err)
	}
	if err := b.fill(); err != nil {
		t.Fatal(err)
	}
	same := 0
	for range 8 {
		if a.rand.Uint64() == b.rand.Uint64() {
			same++
		}
	}
	if same == 8 {
		t.Error("two clients draw the same jitter sequence")
	}
}
