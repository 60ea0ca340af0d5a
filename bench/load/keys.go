package load

import (
	"math/rand/v2"
	"sync/atomic"
)

// Keys are "k" followed by the key's index in decimal, zero-padded to fill
// the key size: with 16-byte keys, key 42 is "k000000000000042". They sort
// in index order, so sequential keys are also sequential for the store.

// KeySizeFor is the smallest key size that can hold every index of a
// keyspace of n keys.
func KeySizeFor(n int) int {
	digits := 1
	for v := n - 1; v >= 10; v /= 10 {
		digits++
	}
	return 1 + digits
}

// FormatKey writes key i into dst, which must be at least KeySizeFor(i+1)
// bytes long; every byte of dst is written.
func FormatKey(dst []byte, i uint64) {
	if len(dst) == 0 {
		return
	}
	dst[0] = 'k'
	for j := len(dst) - 1; j >= 1; j-- {
		dst[j] = byte('0' + i%10)
		i /= 10
	}
}

// keyGen picks key indexes for one worker.
type keyGen struct {
	dist     KeyDist
	keyspace uint64
	// seq is shared by all workers of a run, so that together they walk
	// the keyspace in order.
	seq *atomic.Uint64
	rng *rand.Rand
}

func newKeyGen(dist KeyDist, keyspace int, seq *atomic.Uint64, seed, worker uint64) *keyGen {
	return &keyGen{
		dist:     dist,
		keyspace: uint64(keyspace),
		seq:      seq,
		rng:      rand.New(rand.NewPCG(seed, worker)),
	}
}

// next returns the next key index, in [0, keyspace).
func (g *keyGen) next() uint64 {
	if g.dist == Sequential {
		return (g.seq.Add(1) - 1) % g.keyspace
	}
	return g.rng.Uint64N(g.keyspace)
}

// makeValue returns n incompressible bytes, the same for the same seed.
func makeValue(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 0x76616c7565)) // "value"
	v := make([]byte, n)
	for i := range v {
		v[i] = byte(rng.Uint32())
	}
	return v
}
