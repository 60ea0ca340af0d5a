package load

import (
	"sync"
	"sync/atomic"
	"testing"
)

func TestKeySizeFor(t *testing.T) {
	for _, tc := range []struct{ keyspace, want int }{
		{1, 2}, {10, 2}, {11, 3}, {100, 3}, {101, 4}, {100_000, 6}, {100_001, 7},
	} {
		if got := KeySizeFor(tc.keyspace); got != tc.want {
			t.Errorf("KeySizeFor(%d) = %d, want %d", tc.keyspace, got, tc.want)
		}
	}
}

func TestFormatKey(t *testing.T) {
	for _, tc := range []struct {
		size int
		i    uint64
		want string
	}{
		{16, 42, "k000000000000042"},
		{16, 0, "k000000000000000"},
		{7, 99_999, "k099999"},
		{2, 9, "k9"},
	} {
		dst := make([]byte, tc.size)
		FormatKey(dst, tc.i)
		if string(dst) != tc.want {
			t.Errorf("FormatKey(%d bytes, %d) = %q, want %q", tc.size, tc.i, dst, tc.want)
		}
	}
	// Keys sort in index order.
	a, b := make([]byte, 8), make([]byte, 8)
	FormatKey(a, 9)
	FormatKey(b, 10)
	if string(a) >= string(b) {
		t.Errorf("key 9 %q does not sort before key 10 %q", a, b)
	}
}

func TestSequentialKeysAreSharedAndWrap(t *testing.T) {
	var seq atomic.Uint64
	g1 := newKeyGen(Sequential, 5, &seq, 1, 0)
	g2 := newKeyGen(Sequential, 5, &seq, 1, 1)
	var got []uint64
	for range 3 {
		got = append(got, g1.next(), g2.next())
	}
	want := []uint64{0, 1, 2, 3, 4, 0}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("sequential keys from two workers = %v, want %v", got, want)
		}
	}
}

func TestSequentialKeysConcurrentlyCoverTheKeyspaceOnce(t *testing.T) {
	const workers, per = 8, 1000
	const keyspace = workers * per
	var seq atomic.Uint64
	seen := make([]atomic.Int32, keyspace)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(g *keyGen) {
			defer wg.Done()
			for range per {
				seen[g.next()].Add(1)
			}
		}(newKeyGen(Sequential, keyspace, &seq, 1, uint64(w)))
	}
	wg.Wait()
	for k := range seen {
		if n := seen[k].Load(); n != 1 {
			t.Fatalf("key %d drawn %d times, want once", k, n)
		}
	}
}

func TestUniformKeysStayInRangeAndSpread(t *testing.T) {
	const keyspace, draws = 10, 100_000
	g := newKeyGen(Uniform, keyspace, new(atomic.Uint64), 7, 0)
	var counts [keyspace]int
	for range draws {
		k := g.next()
		if k >= keyspace {
			t.Fatalf("uniform key %d outside [0, %d)", k, keyspace)
		}
		counts[k]++
	}
	// Each bucket expects 10,000 (σ ≈ 95); 9,500..10,500 is over 5σ.
	for k, n := range counts {
		if n < 9500 || n > 10500 {
			t.Errorf("key %d drawn %d times of %d, want about %d", k, n, draws, draws/keyspace)
		}
	}
	// Different workers draw different sequences; the same seed repeats.
	a := newKeyGen(Uniform, 1<<30, nil, 7, 0)
	b := newKeyGen(Uniform, 1<<30, nil, 7, 1)
	c := newKeyGen(Uniform, 1<<30, nil, 7, 0)
	if x, y, z := a.next(), b.next(), c.next(); x == y || x != z {
		t.Errorf("worker 0 drew %d, worker 1 %d, worker 0 again %d: want different, then equal", x, y, z)
	}
}

func TestMakeValue(t *testing.T) {
	v := makeValue(128, 1)
	if len(v) != 128 {
		t.Fatalf("len = %d, want 128", len(v))
	}
	if string(v) != string(makeValue(128, 1)) || string(v) == string(makeValue(128, 2)) {
		t.Error("values should depend on the seed only")
	}
}
